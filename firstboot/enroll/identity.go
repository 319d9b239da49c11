package enroll

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
)

// Identity is what the appliance generates once and keeps across retries, so
// that a retry after a lost response is recognised by the control plane and
// consumes no second use of the key.
type Identity struct {
	KeyPEM      []byte // PKCS#8 private key, a secret
	CSRPEM      []byte
	Fingerprint string
	Nonce       string
}

// NewIdentity generates an ECDSA P-256 key pair and a CSR with commonName cn,
// and a random nonce. r defaults to crypto/rand.
func NewIdentity(cn, fingerprint string, r io.Reader) (*Identity, error) {
	if r == nil {
		r = rand.Reader
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), r)
	if err != nil {
		return nil, fmt.Errorf("generate key pair: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(r, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: cn, Organization: []string{"outpost connector"}},
	}, priv)
	if err != nil {
		return nil, fmt.Errorf("create CSR: %w", err)
	}
	nonce := make([]byte, 16)
	if _, err := io.ReadFull(r, nonce); err != nil {
		return nil, fmt.Errorf("generate nonce: %w", err)
	}
	return &Identity{
		KeyPEM:      pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		CSRPEM:      pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}),
		Fingerprint: fingerprint,
		Nonce:       hex.EncodeToString(nonce),
	}, nil
}

// Fingerprint renders the hardware fingerprint the control plane records:
// "mac=00:50:56:..;uuid=...". A changed MAC later blocks the connector.
func Fingerprint(mac net.HardwareAddr, smbiosUUID string) (string, error) {
	if len(mac) == 0 {
		return "", errors.New("fingerprint: no MAC address for the primary NIC")
	}
	u := strings.ToLower(strings.TrimSpace(smbiosUUID))
	if u == "" {
		u = "unknown"
	}
	return fmt.Sprintf("mac=%s;uuid=%s", mac, u), nil
}
