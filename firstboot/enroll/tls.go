package enroll

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/outpost-appliance/outpost/provkey"
)

// InterceptionError says the server presented a chain that does not contain
// the control plane's CA: something between the appliance and the control
// plane re-signs TLS. The key is never sent over such a connection.
type InterceptionError struct {
	Host   string
	Issuer string
}

func (e *InterceptionError) Error() string {
	return fmt.Sprintf("SSL inspection detected: the certificate for %s is issued by %s; bypass SSL inspection for connector traffic", e.Host, e.Issuer)
}

// ErrInterception is matched by errors.Is for any *InterceptionError.
var ErrInterception = errors.New("SSL inspection detected")

// Is makes errors.Is(err, ErrInterception) true.
func (e *InterceptionError) Is(target error) bool { return target == ErrInterception }

// PinnedTLS returns a TLS configuration that trusts exactly the CA whose
// public key has pin, and nothing from the system store: the chain the server
// presents must contain a certificate with that pin, and the leaf must chain
// to it, be valid for host and valid at now().
func PinnedTLS(host string, pin provkey.Pin, now func() time.Time) *tls.Config {
	if now == nil {
		now = time.Now
	}
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	return &tls.Config{
		ServerName:         name,
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by the pin check below, not skipped
		Time:               now,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			return verifyPinned(raw, name, pin, now())
		},
	}
}

func verifyPinned(raw [][]byte, name string, pin provkey.Pin, now time.Time) error {
	if len(raw) == 0 {
		return fmt.Errorf("%s presented no certificate", name)
	}
	certs := make([]*x509.Certificate, 0, len(raw))
	for i, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return fmt.Errorf("certificate %d from %s: %w", i, name, err)
		}
		certs = append(certs, c)
	}
	anchor := -1
	for i, c := range certs {
		if pin.Matches(c) {
			anchor = i
			break
		}
	}
	if anchor < 0 {
		top := certs[len(certs)-1]
		issuer := top.Issuer.CommonName
		if issuer == "" {
			issuer = top.Issuer.String()
		}
		return &InterceptionError{Host: name, Issuer: fmt.Sprintf("%q", issuer)}
	}
	roots := x509.NewCertPool()
	roots.AddCert(certs[anchor])
	inter := x509.NewCertPool()
	for _, c := range certs[1:anchor] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{
		DNSName:       name,
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.Expired {
			return fmt.Errorf("certificate of %s is not valid at %s (this appliance's clock): %w; check the time settings (NTP)", name, now.UTC().Format(time.RFC3339), err)
		}
		return fmt.Errorf("certificate of %s does not verify against the control plane CA in the provisioning key: %w", name, err)
	}
	return nil
}
