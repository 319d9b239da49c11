package ova

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/outpost-appliance/outpost/internal/atomicfile"
)

// PackOptions are the choices of WriteOVA that are not part of the appliance.
type PackOptions struct {
	// ModTime is every tar member's modification time: SOURCE_DATE_EPOCH for
	// reproducible builds. The zero value means the Unix epoch.
	ModTime time.Time
	// Signer, when set, signs the manifest into a NAME.cert member.
	Signer *Signer
}

// Signer signs an OVA's manifest the way ovftool does: an RSA PKCS#1 v1.5
// signature over the manifest's SHA-256, stored with the signing
// certificate.
type Signer struct {
	key  *rsa.PrivateKey
	cert *x509.Certificate
}

// NewSigner parses a PEM private key (RSA, PKCS#1 or PKCS#8) and the PEM
// certificate of its public key.
func NewSigner(keyPEM, certPEM []byte) (*Signer, error) {
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, errors.New("signing key: no PEM block found; give a PEM RSA private key (BEGIN RSA PRIVATE KEY or BEGIN PRIVATE KEY)")
	}
	var key *rsa.PrivateKey
	if k, err := x509.ParsePKCS1PrivateKey(kb.Bytes); err == nil {
		key = k
	} else if k8, err8 := x509.ParsePKCS8PrivateKey(kb.Bytes); err8 == nil {
		rk, ok := k8.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("signing key: a %T, but ovftool and ESXi verify only RSA signatures; give an RSA key", k8)
		}
		key = rk
	} else {
		return nil, fmt.Errorf("signing key: PEM block %q is not an RSA private key (PKCS#1 or PKCS#8, unencrypted)", kb.Type)
	}
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, errors.New("signing certificate: no PEM CERTIFICATE block found")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing certificate: %w", err)
	}
	if pub, ok := cert.PublicKey.(*rsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return nil, errors.New("signing certificate does not belong to the signing key: give the certificate issued for this key")
	}
	return &Signer{key: key, cert: cert}, nil
}

// certFile returns the .cert member for manifest, named mfName.
func (s *Signer) certFile(mfName string, manifest []byte) ([]byte, error) {
	sum := sha256.Sum256(manifest)
	// PKCS#1 v1.5 is deterministic: the same inputs give the same .cert.
	sig, err := rsa.SignPKCS1v15(rand.Reader, s.key, crypto.SHA256, sum[:])
	if err != nil {
		return nil, fmt.Errorf("signing the manifest: %w", err)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "SHA256(%s)= %s\n", mfName, hex.EncodeToString(sig))
	if err := pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: s.cert.Raw}); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// ManifestLine is one manifest line in the form ESXi and govc read.
func ManifestLine(name, sha256hex string) string {
	return fmt.Sprintf("SHA256(%s)= %s\n", name, sha256hex)
}

// WriteOVA writes the OVA of appliance a with disks to w: NAME.ovf,
// NAME.mf, NAME.cert (when signing), then the disks, as a deterministic
// ustar archive. Disks are streamed from their files; a disk without a
// precomputed SHA256 is read twice (hash, then copy).
func WriteOVA(w io.Writer, a Appliance, disks []Disk, opt PackOptions) error {
	a = a.withDefaults()
	if err := a.validate(disks); err != nil {
		return err
	}
	disks, err := statDisks(disks)
	if err != nil {
		return err
	}
	for i := range disks {
		if disks[i].SHA256 == "" {
			if disks[i].SHA256, err = hashFile(disks[i].Path); err != nil {
				return err
			}
		}
	}
	desc, err := marshalEnvelope(envelope(a, disks))
	if err != nil {
		return err
	}
	ovfName, mfName := a.Name+".ovf", a.Name+".mf"
	var mf bytes.Buffer
	sum := sha256.Sum256(desc)
	mf.WriteString(ManifestLine(ovfName, hex.EncodeToString(sum[:])))
	for _, d := range disks {
		mf.WriteString(ManifestLine(d.Name, d.SHA256))
	}

	tw := tar.NewWriter(w)
	mtime := opt.ModTime
	if mtime.IsZero() {
		mtime = time.Unix(0, 0)
	}
	header := func(name string, size int64) error {
		return tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644,
			ModTime: mtime.UTC().Truncate(time.Second), Format: tar.FormatUSTAR,
		})
	}
	small := func(name string, data []byte) error {
		if err := header(name, int64(len(data))); err != nil {
			return fmt.Errorf("writing %s into the OVA: %w", name, err)
		}
		if _, err := tw.Write(data); err != nil {
			return fmt.Errorf("writing %s into the OVA: %w", name, err)
		}
		return nil
	}
	if err := small(ovfName, desc); err != nil {
		return err
	}
	if err := small(mfName, mf.Bytes()); err != nil {
		return err
	}
	if opt.Signer != nil {
		cert, err := opt.Signer.certFile(mfName, mf.Bytes())
		if err != nil {
			return err
		}
		if err := small(a.Name+".cert", cert); err != nil {
			return err
		}
	}
	for _, d := range disks {
		if err := copyDisk(tw, header, d); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("finishing the OVA: %w", err)
	}
	return nil
}

// WriteOVAFile writes the OVA to path through a temporary file in the same
// directory, synced and renamed into place (internal/atomicfile): a failure
// leaves no partial OVA.
func WriteOVAFile(path string, a Appliance, disks []Disk, opt PackOptions) error {
	return atomicfile.Write(path, 0o644, atomicfile.Options{}, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 1<<20)
		if err := WriteOVA(bw, a, disks, opt); err != nil {
			return err
		}
		return bw.Flush()
	})
}

// copyDisk streams d into the archive and checks that the file still has
// the size and digest recorded in the descriptor and manifest.
func copyDisk(tw *tar.Writer, header func(string, int64) error, d Disk) error {
	f, err := os.Open(d.Path)
	if err != nil {
		return fmt.Errorf("disk %s: %w", d.Name, err)
	}
	defer f.Close()
	if err := header(d.Name, d.size); err != nil {
		return fmt.Errorf("writing %s into the OVA: %w", d.Name, err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tw, h), f)
	if err != nil {
		return fmt.Errorf("copying disk %s (%s) into the OVA: %w", d.Name, d.Path, err)
	}
	if n != d.size {
		return fmt.Errorf("disk %s (%s) changed size while being packed (%d bytes, then %d): do not write to it during packing", d.Name, d.Path, d.size, n)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != d.SHA256 {
		return fmt.Errorf("disk %s (%s): SHA-256 %s does not match the manifest's %s: the file changed during packing or the given digest is wrong", d.Name, d.Path, got, d.SHA256)
	}
	return nil
}

// maxUSTARSize is one more than the largest size a ustar header records
// (11 octal digits).
const maxUSTARSize = 1 << 33

func statDisks(disks []Disk) ([]Disk, error) {
	out := make([]Disk, len(disks))
	for i, d := range disks {
		fi, err := os.Stat(d.Path)
		if err != nil {
			return nil, fmt.Errorf("disk %s: %w", d.Name, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("disk %s: %s is not a regular file", d.Name, d.Path)
		}
		if fi.Size() >= maxUSTARSize {
			return nil, fmt.Errorf("disk %s: %s is %d bytes; a ustar OVA member holds less than 8 GiB, which a compressed streamOptimized VMDK of an appliance should never reach", d.Name, d.Path, fi.Size())
		}
		d.size = fi.Size()
		out[i] = d
	}
	return out, nil
}

func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hashing %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
