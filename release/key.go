package release

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// GenerateKey makes a release key and returns it as PEM: the private key
// (PKCS#8, "PRIVATE KEY") and the public key (PKIX, "PUBLIC KEY") that a
// control plane is configured to trust.
func GenerateKey() (private, public []byte, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	p8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	public, err = MarshalPublicKey(pub)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), public, nil
}

// MarshalPublicKey returns a release key's public half as PEM PKIX
// ("PUBLIC KEY"), what ParsePublicKey reads: the file a control plane and
// an appliance are given to trust the key's bundles.
func MarshalPublicKey(pub ed25519.PublicKey) ([]byte, error) {
	pk, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pk}), nil
}

// ParsePrivateKey reads an Ed25519 release key in PEM PKCS#8, as
// GenerateKey and `openssl genpkey -algorithm ed25519` write it.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, errors.New("release key: not a PEM \"PRIVATE KEY\" (PKCS#8); make one with 'outpost releases keygen -o FILE'")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("release key: %w", err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("release key: a %T, want Ed25519; make one with 'outpost releases keygen -o FILE'", k)
	}
	return ek, nil
}

// ParsePublicKey reads a trusted release key in PEM PKIX ("PUBLIC KEY").
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PUBLIC KEY" {
		return nil, errors.New("release public key: not a PEM \"PUBLIC KEY\"")
	}
	k, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("release public key: %w", err)
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("release public key: a %T, want Ed25519", k)
	}
	return ek, nil
}
