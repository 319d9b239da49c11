package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/internal/testtool"
)

func TestCSRChecks(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	good, err := MakeCSR(p256, "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	weak, err := MakeCSR(rsa1024, "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	curve, err := MakeCSR(p224, "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(good)
	der := append([]byte(nil), blk.Bytes...)
	der[len(der)-3] ^= 0xff // inside the signature
	badSig := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	for _, tc := range []struct {
		name, want string
		in         []byte
	}{
		{"good", "", good},
		{"weak rsa", "1024 bits is too weak", weak},
		{"p224", "P-224 is not supported", curve},
		{"bad signature", "signature does not verify", badSig},
		{"not pem", "no PEM block", []byte("hello")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseCSR(tc.in)
			if tc.want == "" {
				if err != nil || len(c.PublicKeyHash) != 64 {
					t.Fatalf("ParseCSR = %v, %v", c, err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrBadCSR) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseCSR error = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestSignSaveLoadVerify(t *testing.T) {
	now := time.Now()
	a, err := NewAuthority(now)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := a.Save(dir); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, rootKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("root key mode = %v, %v", st, err)
	}
	b, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !b.Root.Cert.Equal(a.Root.Cert) {
		t.Fatal("loaded root differs")
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csrPEM, _ := MakeCSR(k, "x", nil)
	csr, err := ParseCSR(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := b.Signing[DefaultSigningCA].Sign(csr, "Melbourne-1", now)
	if err != nil {
		t.Fatal(err)
	}
	if iss.Cert.Subject.CommonName != "Melbourne-1" {
		t.Fatalf("CN = %q", iss.Cert.Subject.CommonName)
	}
	inter := x509.NewCertPool()
	inter.AddCert(b.Signing[DefaultSigningCA].Cert)
	if _, err := iss.Cert.Verify(x509.VerifyOptions{Roots: a.RootPool(), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(iss.ChainPEM), "BEGIN CERTIFICATE"); n != 3 {
		t.Fatalf("chain has %d certificates, want 3", n)
	}
	testtool.Need(t, "openssl")
	leaf := filepath.Join(dir, "leaf.pem")
	os.WriteFile(leaf, iss.ChainPEM[:strings.Index(string(iss.ChainPEM), "-----END CERTIFICATE-----")+26], 0o644)
	out, err := exec.Command("openssl", "verify", "-CAfile", filepath.Join(dir, rootCertFile),
		"-untrusted", filepath.Join(dir, caDir, DefaultSigningCA+".pem"), leaf).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
}

func FuzzParseCSR(f *testing.F) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	good, _ := MakeCSR(k, "x", nil)
	f.Add(good)
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCSR(b)
		if err == nil && len(c.PublicKeyHash) != 64 {
			t.Fatalf("accepted CSR without a public key hash")
		}
		if err != nil && !errors.Is(err, ErrBadCSR) {
			t.Fatalf("error %v does not wrap ErrBadCSR", err)
		}
	})
}
