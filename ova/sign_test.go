package ova

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-appliance/outpost/internal/testtool"
)

// signingPair makes an RSA key and a self-signed certificate with openssl.
func signingPair(t *testing.T, dir, name string) (keyPEM, certPEM []byte) {
	t.Helper()
	key, cert := filepath.Join(dir, name+".key"), filepath.Join(dir, name+".crt")
	run(t, dir, "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
		"-days", "30", "-subj", "/CN=outpost test signer")
	k, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	return k, c
}

func TestSignedOVAVerifiesWithOpenSSL(t *testing.T) {
	testtool.Need(t, "openssl", "tar")
	dir := t.TempDir()
	keyPEM, certPEM := signingPair(t, dir, "signer")
	signer, err := NewSigner(keyPEM, certPEM)
	if err != nil {
		t.Fatal(err)
	}
	ova := writeOVA(t, testAppliance(), []Disk{fixedDisk(t)}, PackOptions{ModTime: epoch, Signer: signer})

	listing := run(t, "", "tar", "-tf", ova)
	if want := "outpost-connector.ovf\noutpost-connector.mf\noutpost-connector.cert\noutpost-connector-disk1.vmdk\n"; listing != want {
		t.Fatalf("members:\n%s\nwant:\n%s", listing, want)
	}
	x := t.TempDir()
	run(t, x, "tar", "-xf", ova)
	cert, err := os.ReadFile(filepath.Join(x, "outpost-connector.cert"))
	if err != nil {
		t.Fatal(err)
	}
	first, pemPart, _ := strings.Cut(string(cert), "\n")
	var name, sig string
	if rest, ok := strings.CutPrefix(first, "SHA256("); ok {
		name, sig, _ = strings.Cut(rest, ")= ")
	}
	if name != "outpost-connector.mf" || len(sig) != 512 {
		t.Fatalf(".cert first line %q: want SHA256(outpost-connector.mf)= <2048-bit signature in hex>", first)
	}
	if !strings.HasPrefix(pemPart, "-----BEGIN CERTIFICATE-----\n") || !bytes.Equal([]byte(pemPart), certPEM) {
		t.Errorf(".cert does not carry the signing certificate after the signature line:\n%s", pemPart)
	}
	raw, err := hex.DecodeString(sig)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(x, "sig.bin"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(x, "cert.pem"), []byte(pemPart), 0o644); err != nil {
		t.Fatal(err)
	}
	pub := run(t, x, "openssl", "x509", "-in", "cert.pem", "-noout", "-pubkey")
	if err := os.WriteFile(filepath.Join(x, "pub.pem"), []byte(pub), 0o644); err != nil {
		t.Fatal(err)
	}
	out := run(t, x, "openssl", "dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig.bin", "outpost-connector.mf")
	if strings.TrimSpace(out) != "Verified OK" {
		t.Errorf("openssl dgst -verify: %q", out)
	}
	// A manifest changed after signing must fail verification.
	mf := filepath.Join(x, "outpost-connector.mf")
	b, _ := os.ReadFile(mf)
	if err := os.WriteFile(mf, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run2(t, x, "openssl", "dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig.bin", "outpost-connector.mf"); err == nil {
		t.Error("openssl verified a changed manifest: the signature does not cover the manifest")
	}
}

func TestNewSignerRefusesBadInput(t *testing.T) {
	testtool.Need(t, "openssl")
	dir := t.TempDir()
	keyA, certA := signingPair(t, dir, "a")
	_, certB := signingPair(t, dir, "b")
	run(t, dir, "openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ec.key")
	run(t, dir, "openssl", "pkcs8", "-topk8", "-nocrypt", "-in", "ec.key", "-out", "ec8.key")
	ecKey, _ := os.ReadFile(filepath.Join(dir, "ec8.key"))
	for _, tc := range []struct {
		name      string
		key, cert []byte
		want      string
	}{
		{"other key's certificate", keyA, certB, "does not belong to the signing key"},
		{"not PEM", []byte("hello"), certA, "no PEM block"},
		{"EC key", ecKey, certA, "only RSA"},
		{"no certificate", keyA, keyA, "no PEM CERTIFICATE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewSigner(tc.key, tc.cert)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "PRIVATE KEY-----") {
				t.Error("error message contains key material")
			}
		})
	}
	if _, err := NewSigner(keyA, certA); err != nil {
		t.Errorf("matching PKCS#8 RSA key and certificate refused: %v", err)
	}
	run(t, dir, "openssl", "rsa", "-traditional", "-in", "a.key", "-out", "a1.key")
	key1, _ := os.ReadFile(filepath.Join(dir, "a1.key"))
	if !bytes.Contains(key1, []byte("BEGIN RSA PRIVATE KEY")) {
		t.Fatalf("openssl did not write a PKCS#1 key:\n%.40s", key1)
	}
	if _, err := NewSigner(key1, certA); err != nil {
		t.Errorf("matching PKCS#1 RSA key and certificate refused: %v", err)
	}
}
