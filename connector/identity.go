package connector

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/firstboot/sysroot"
)

// Identity is the connector's certificate chain and private key, and the
// control plane's root CA from that chain.
type Identity struct {
	Cert  tls.Certificate
	Leaf  *x509.Certificate
	Roots *x509.CertPool
}

// ErrNotEnrolled means there is no certificate yet: first boot has not
// enrolled the appliance.
var ErrNotEnrolled = errors.New("not enrolled yet")

const newSuffix = ".new"

// LoadIdentity reads the certificate and key first boot stored, or that a
// renewal stored: a renewal writes CERT.new and KEY.new and renames them,
// so after a crash between the two renames the pair that matches (and
// expires last) is used.
func LoadIdentity(root sysroot.Root) (*Identity, error) {
	type pair struct{ cert, key string }
	c, k := appliance.CertFile, appliance.KeyFile
	var best *Identity
	var firstErr error
	found := false
	for _, p := range []pair{{c, k}, {c + newSuffix, k + newSuffix}, {c + newSuffix, k}, {c, k + newSuffix}} {
		certPEM, err1 := root.ReadFile(p.cert)
		keyPEM, err2 := root.ReadFile(p.key)
		if err1 != nil || err2 != nil {
			continue
		}
		found = true
		id, err := parseIdentity(certPEM, keyPEM)
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("%s with %s: %w", p.cert, p.key, err)
			}
			continue
		}
		if best == nil || id.Leaf.NotAfter.After(best.Leaf.NotAfter) {
			best = id
		}
	}
	switch {
	case best != nil:
		return best, nil
	case !found:
		return nil, ErrNotEnrolled
	default:
		return nil, firstErr
	}
}

func parseIdentity(certPEM, keyPEM []byte) (*Identity, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	id := &Identity{Cert: cert, Roots: x509.NewCertPool()}
	for i, der := range cert.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", i, err)
		}
		if i == 0 {
			id.Leaf = c
		}
		if i == len(cert.Certificate)-1 {
			id.Roots.AddCert(c)
		}
	}
	if len(cert.Certificate) < 2 {
		return nil, errors.New("the certificate file holds no CA: want the chain leaf, signing CA, root")
	}
	return id, nil
}

// StoreIdentity replaces the identity with a renewed one: both files are
// written completely under .new names first, then renamed, key first, so
// the old pair stays usable until the new one is whole.
func StoreIdentity(root sysroot.Root, certPEM, keyPEM []byte) error {
	if _, err := parseIdentity(certPEM, keyPEM); err != nil {
		return fmt.Errorf("renewed certificate: %w", err)
	}
	c, k := appliance.CertFile, appliance.KeyFile
	if err := root.WriteFile(k+newSuffix, keyPEM, 0o600); err != nil {
		return err
	}
	if err := root.WriteFile(c+newSuffix, certPEM, 0o644); err != nil {
		return err
	}
	for _, name := range []string{k, c} {
		from, err := root.Path(name + newSuffix)
		if err != nil {
			return err
		}
		to, err := root.Path(name)
		if err != nil {
			return err
		}
		if err := os.Rename(from, to); err != nil {
			return fmt.Errorf("store renewed identity: %w", err)
		}
	}
	return nil
}
