// Package pki holds the control plane's certificate authorities: a root CA,
// intermediate signing CAs that sign connector certificates, and the serving
// certificate of the HTTPS endpoint. It checks certificate signing requests
// from appliances (signature, key strength) before anything is signed.
//
// It is not a general CA: no revocation lists, no OCSP. Revocation is a
// control-plane state that the heartbeat endpoint enforces.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/outpost-appliance/outpost/internal/atomicfile"
)

// CA is a certificate authority: its certificate, its private key and the
// chain from it up to the root (the root itself included, last).
type CA struct {
	Name  string
	Cert  *x509.Certificate
	Key   crypto.Signer
	Chain []*x509.Certificate // Cert first, root last
}

// ChainPEM returns the PEM of the chain from this CA up to the root.
func (ca *CA) ChainPEM() []byte {
	var out []byte
	for _, c := range ca.Chain {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// Authority is the set of CAs a control plane owns.
type Authority struct {
	Root    *CA
	Signing map[string]*CA // by name; "Connector" always exists
}

// DefaultSigningCA is the intermediate created on first start.
const DefaultSigningCA = "Connector"

// Validity periods.
const (
	rootValidity      = 20 * 365 * 24 * time.Hour
	signingValidity   = 10 * 365 * 24 * time.Hour
	servingValidity   = 365 * 24 * time.Hour
	ConnectorValidity = 365 * 24 * time.Hour
)

func serial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate certificate serial: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func newKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ECDSA P-256 key: %w", err)
	}
	return k, nil
}

// NewAuthority creates a root CA and the default signing CA.
func NewAuthority(now time.Time) (*Authority, error) {
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "outpost root CA", Organization: []string{"outpost"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(rootValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create root CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	root := &CA{Name: "root", Cert: cert, Key: key, Chain: []*x509.Certificate{cert}}
	a := &Authority{Root: root, Signing: map[string]*CA{}}
	if _, err := a.AddSigningCA(DefaultSigningCA, now); err != nil {
		return nil, err
	}
	return a, nil
}

// AddSigningCA creates an intermediate CA named name, signed by the root.
func (a *Authority) AddSigningCA(name string, now time.Time) (*CA, error) {
	if _, ok := a.Signing[name]; ok {
		return nil, fmt.Errorf("signing CA %q already exists", name)
	}
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"outpost"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(signingValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Root.Cert, key.Public(), a.Root.Key)
	if err != nil {
		return nil, fmt.Errorf("create signing CA %q: %w", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	ca := &CA{Name: name, Cert: cert, Key: key, Chain: []*x509.Certificate{cert, a.Root.Cert}}
	a.Signing[name] = ca
	return ca, nil
}

// RootPool returns a pool holding only the root.
func (a *Authority) RootPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(a.Root.Cert)
	return p
}

// ServingCert issues a TLS server certificate, signed by the root, for the
// given host names and IP addresses. It is kept in memory only.
func (a *Authority) ServingCert(hosts []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: "outpost control plane", Organization: []string{"outpost"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(servingValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(strings.Trim(h, "[]")); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Root.Cert, key.Public(), a.Root.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("create serving certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.Root.Cert.Raw})...)
	return certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// ErrBadCSR is wrapped by every CSR refusal.
var ErrBadCSR = errors.New("bad certificate signing request")

// CSR is a checked certificate signing request.
type CSR struct {
	Req *x509.CertificateRequest
	// PublicKeyHash is hex SHA-256 of the request's SubjectPublicKeyInfo:
	// the identity of the appliance's key pair.
	PublicKeyHash string
}

// ParseCSR decodes a PEM PKCS#10 request, verifies its self-signature and
// refuses weak keys: RSA below 2048 bits and curves other than P-256, P-384
// and P-521. Ed25519 is accepted.
func ParseCSR(pemText []byte) (*CSR, error) {
	block, rest := pem.Decode(pemText)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block found; send the request as PEM text starting with -----BEGIN CERTIFICATE REQUEST-----", ErrBadCSR)
	}
	if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("%w: PEM block is %q, want CERTIFICATE REQUEST", ErrBadCSR, block.Type)
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return nil, fmt.Errorf("%w: extra data after the request; send exactly one PEM block", ErrBadCSR)
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCSR, err)
	}
	switch pub := req.PublicKey.(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < 2048 {
			return nil, fmt.Errorf("%w: RSA key of %d bits is too weak; generate a key of at least 2048 bits (or ECDSA P-256)", ErrBadCSR, pub.N.BitLen())
		}
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return nil, fmt.Errorf("%w: elliptic curve %s is not supported; use P-256, P-384 or P-521", ErrBadCSR, pub.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("%w: unsupported public key type %T; use ECDSA P-256, RSA ≥2048 or Ed25519", ErrBadCSR, req.PublicKey)
	}
	if err := req.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: the request's signature does not verify (%v); regenerate the request with its own private key", ErrBadCSR, err)
	}
	sum := sha256.Sum256(req.RawSubjectPublicKeyInfo)
	return &CSR{Req: req, PublicKeyHash: hex.EncodeToString(sum[:])}, nil
}

// Issued is a signed connector certificate.
type Issued struct {
	Cert     *x509.Certificate
	Serial   string // hex
	ChainPEM []byte // leaf, signing CA, root
}

// Sign issues a client certificate for the connector name to the CSR's key.
func (ca *CA) Sign(csr *CSR, name string, now time.Time) (*Issued, error) {
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: name, Organization: []string{"outpost connector"}},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(ConnectorValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, csr.Req.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %s with CA %q: %w", name, ca.Name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	out = append(out, ca.ChainPEM()...)
	return &Issued{Cert: cert, Serial: hex.EncodeToString(sn.Bytes()), ChainPEM: out}, nil
}

// SerialHex renders a certificate serial the way Issued.Serial does.
func SerialHex(c *x509.Certificate) string { return hex.EncodeToString(c.SerialNumber.Bytes()) }

// Files in a PKI directory.
const (
	rootCertFile = "root-ca.pem"
	rootKeyFile  = "root-ca.key"
	caDir        = "signing-ca"
)

// Save writes the authority under dir: certificates 0644, private keys 0600.
func (a *Authority) Save(dir string) error {
	if err := os.MkdirAll(filepath.Join(dir, caDir), 0o700); err != nil {
		return fmt.Errorf("create PKI directory: %w", err)
	}
	if err := saveCA(a.Root, filepath.Join(dir, rootCertFile), filepath.Join(dir, rootKeyFile)); err != nil {
		return err
	}
	for name, ca := range a.Signing {
		base := filepath.Join(dir, caDir, name)
		if err := saveCA(ca, base+".pem", base+".key"); err != nil {
			return err
		}
	}
	return nil
}

func saveCA(ca *CA, certPath, keyPath string) error {
	kder, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return fmt.Errorf("encode %s key: %w", ca.Name, err)
	}
	if err := atomicfile.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return atomicfile.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}), 0o644)
}

// Load reads an authority written by Save. It reports os.ErrNotExist (wrapped)
// when dir holds no root CA yet.
func Load(dir string) (*Authority, error) {
	root, err := loadCA("root", filepath.Join(dir, rootCertFile), filepath.Join(dir, rootKeyFile))
	if err != nil {
		return nil, err
	}
	root.Chain = []*x509.Certificate{root.Cert}
	a := &Authority{Root: root, Signing: map[string]*CA{}}
	matches, err := filepath.Glob(filepath.Join(dir, caDir, "*.pem"))
	if err != nil {
		return nil, err
	}
	for _, m := range matches {
		name := strings.TrimSuffix(filepath.Base(m), ".pem")
		ca, err := loadCA(name, m, strings.TrimSuffix(m, ".pem")+".key")
		if err != nil {
			return nil, err
		}
		if err := ca.Cert.CheckSignatureFrom(root.Cert); err != nil {
			return nil, fmt.Errorf("signing CA %s (%s) is not signed by the root CA in %s: %w", name, m, dir, err)
		}
		ca.Chain = []*x509.Certificate{ca.Cert, root.Cert}
		a.Signing[name] = ca
	}
	if a.Signing[DefaultSigningCA] == nil {
		return nil, fmt.Errorf("%s: the default signing CA %q is missing", filepath.Join(dir, caDir), DefaultSigningCA)
	}
	return a, nil
}

func loadCA(name, certPath, keyPath string) (*CA, error) {
	cb, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("read %s CA certificate: %w", name, err)
	}
	kb, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("read %s CA key: %w", name, err)
	}
	cblk, _ := pem.Decode(cb)
	kblk, _ := pem.Decode(kb)
	if cblk == nil || kblk == nil {
		return nil, fmt.Errorf("%s or %s: not PEM", certPath, keyPath)
	}
	cert, err := x509.ParseCertificate(cblk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kblk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: key type %T cannot sign", keyPath, k)
	}
	return &CA{Name: name, Cert: cert, Key: signer}, nil
}

// MakeCSR builds a PEM CSR for key (a helper for clients and tests).
func MakeCSR(key crypto.Signer, cn string, r io.Reader) ([]byte, error) {
	if r == nil {
		r = rand.Reader
	}
	der, err := x509.CreateCertificateRequest(r, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		return nil, fmt.Errorf("create certificate request: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}
