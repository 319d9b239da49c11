package release

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/outpost-appliance/outpost/appliance"
)

// Members of a bundle, in order.
const (
	ManifestName  = "manifest.json"
	SignatureName = "manifest.sig"
	PayloadName   = "root.img.zst"
)

// FormatVersion is Manifest.Format for bundles this package writes.
const FormatVersion = 1

// maxManifest bounds what is read before the signature is checked.
const maxManifest = 64 << 10

// Errors Verify returns (wrapped, with the detail a person needs).
var (
	ErrMalformed    = errors.New("not a valid release bundle")
	ErrSignature    = errors.New("bundle signature is not from a trusted release key")
	ErrHash         = errors.New("bundle payload does not match its manifest")
	ErrAppliance    = errors.New("bundle is for another appliance")
	ErrArchitecture = errors.New("bundle is for another architecture")
	ErrDowngrade    = errors.New("bundle is older than the running version")
	ErrTooLarge     = errors.New("bundle's image is larger than the root partition")
)

// Manifest describes a bundle's payload; it is what the release key signs.
type Manifest struct {
	Format       int    `json:"format"`
	Name         string `json:"name"`
	Version      string `json:"version"`
	Architecture string `json:"architecture"`
	// Size is the uncompressed image's size in bytes, ImageSHA256 its
	// hash (hex); PayloadSize and PayloadSHA256 are the compressed
	// payload's.
	Size          int64  `json:"size"`
	ImageSHA256   string `json:"image_sha256"`
	PayloadSize   int64  `json:"payload_size"`
	PayloadSHA256 string `json:"payload_sha256"`
}

var (
	hexSHA256 = regexp.MustCompile(`^[0-9a-f]{64}$`)
	// The same rule as an image spec's version.
	versionRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.+~_-]{0,63}$`)
	archRe    = regexp.MustCompile(`^[a-z0-9_]{1,32}$`)
)

// ParseManifest decodes a manifest strictly (unknown fields, trailing data
// and missing or malformed fields are errors) and reports every problem.
func ParseManifest(data []byte) (Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("%w: %s: %v", ErrMalformed, ManifestName, err)
	}
	if dec.More() {
		return Manifest{}, fmt.Errorf("%w: %s: data after the manifest", ErrMalformed, ManifestName)
	}
	if err := m.validate(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

func (m Manifest) validate() error {
	var probs []error
	add := func(field, format string, a ...any) {
		probs = append(probs, fmt.Errorf("%w: %s: %s: %s", ErrMalformed, ManifestName, field, fmt.Sprintf(format, a...)))
	}
	if m.Format != FormatVersion {
		add("format", "%d, this outpost reads %d; use a matching outpost", m.Format, FormatVersion)
	}
	if err := appliance.CheckName(m.Name); err != nil {
		add("name", "%v", err)
	}
	if !versionRe.MatchString(m.Version) {
		add("version", "%q is not a version", m.Version)
	}
	if !archRe.MatchString(m.Architecture) {
		add("architecture", "%q is not an architecture", m.Architecture)
	}
	if m.Size <= 0 {
		add("size", "%d, want a positive number of bytes", m.Size)
	}
	if m.PayloadSize <= 0 {
		add("payload_size", "%d, want a positive number of bytes", m.PayloadSize)
	}
	if !hexSHA256.MatchString(m.ImageSHA256) {
		add("image_sha256", "%q is not a lower-case hex SHA-256", m.ImageSHA256)
	}
	if !hexSHA256.MatchString(m.PayloadSHA256) {
		add("payload_sha256", "%q is not a lower-case hex SHA-256", m.PayloadSHA256)
	}
	return errors.Join(probs...)
}

// Info names what a bundle holds; Write fills in the sizes and hashes.
type Info struct {
	Name         string
	Version      string
	Architecture string
}

// Write compresses image (the root partition's bytes) and writes a signed
// bundle to w. The payload is compressed to a temporary file in scratchDir
// first ("" means os.TempDir) so that the manifest, which carries the
// payload's hash, comes first in the bundle; memory stays bounded.
func Write(w io.Writer, info Info, image io.Reader, key ed25519.PrivateKey, scratchDir string) (Manifest, error) {
	if len(key) != ed25519.PrivateKeySize {
		return Manifest{}, errors.New("release: no valid Ed25519 release key")
	}
	tmp, err := os.CreateTemp(scratchDir, ".outpost-bundle-*.zst")
	if err != nil {
		return Manifest{}, fmt.Errorf("release: scratch file: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()

	imageSum, payloadSum := sha256.New(), sha256.New()
	counted := &counter{w: io.MultiWriter(tmp, payloadSum)}
	enc, err := zstd.NewWriter(counted, zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		return Manifest{}, err
	}
	size, err := io.Copy(io.MultiWriter(enc, imageSum), image)
	if err != nil {
		enc.Close()
		return Manifest{}, fmt.Errorf("release: reading the image: %w", err)
	}
	if err := enc.Close(); err != nil {
		return Manifest{}, fmt.Errorf("release: compressing the image: %w", err)
	}
	m := Manifest{
		Format: FormatVersion, Name: info.Name, Version: info.Version, Architecture: info.Architecture,
		Size: size, ImageSHA256: hex.EncodeToString(imageSum.Sum(nil)),
		PayloadSize: counted.n, PayloadSHA256: hex.EncodeToString(payloadSum.Sum(nil)),
	}
	if err := m.validate(); err != nil {
		return Manifest{}, fmt.Errorf("release: %w", err)
	}
	body, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Manifest{}, err
	}
	body = append(body, '\n')
	sig := ed25519.Sign(key, body)

	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return Manifest{}, err
	}
	tw := tar.NewWriter(w)
	member := func(name string, size int64, r io.Reader) error {
		// Fixed metadata: the same image and key give the same bundle.
		hdr := &tar.Header{Name: name, Mode: 0o644, Size: size, ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := io.Copy(tw, r)
		return err
	}
	if err := member(ManifestName, int64(len(body)), bytes.NewReader(body)); err != nil {
		return Manifest{}, fmt.Errorf("release: writing the bundle: %w", err)
	}
	if err := member(SignatureName, int64(len(sig)), bytes.NewReader(sig)); err != nil {
		return Manifest{}, fmt.Errorf("release: writing the bundle: %w", err)
	}
	if err := member(PayloadName, counted.n, tmp); err != nil {
		return Manifest{}, fmt.Errorf("release: writing the bundle: %w", err)
	}
	if err := tw.Close(); err != nil {
		return Manifest{}, fmt.Errorf("release: writing the bundle: %w", err)
	}
	return m, nil
}

type counter struct {
	w io.Writer
	n int64
}

func (c *counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Policy is what a bundle must match to be installed here.
type Policy struct {
	// Name and Architecture are the running appliance's; a bundle for
	// another is refused. "" accepts any (a control plane checking a
	// publish).
	Name         string
	Architecture string
	// Running is the running version; a bundle older than it is refused
	// unless AllowDowngrade. The same version is accepted (a reinstall).
	Running        string
	AllowDowngrade bool
	// MaxSize is the root partition's size in bytes: a larger image is
	// refused. 0 means no limit.
	MaxSize int64
}

// Verify reads a whole bundle from r and checks, in order, that it is well
// formed, that its manifest is signed by one of trusted, that the manifest
// matches p, and that the payload has the manifest's size and hashes
// (compressed and uncompressed). It writes nothing; the payload is
// decompressed to count and hash it, never beyond the manifest's size.
func Verify(r io.Reader, trusted []ed25519.PublicKey, p Policy) (Manifest, error) {
	tr := tar.NewReader(r)
	body, err := readMember(tr, ManifestName, maxManifest)
	if err != nil {
		return Manifest{}, err
	}
	sig, err := readMember(tr, SignatureName, ed25519.SignatureSize)
	if err != nil {
		return Manifest{}, err
	}
	if !signedBy(body, sig, trusted) {
		return Manifest{}, fmt.Errorf("%w: configure the public key of the release key that signed it, or rebuild it with a trusted --release-key", ErrSignature)
	}
	m, err := ParseManifest(body)
	if err != nil {
		return Manifest{}, err
	}
	if err := p.check(m); err != nil {
		return m, err
	}
	hdr, err := tr.Next()
	if err != nil {
		return m, fmt.Errorf("%w: no %s: %v", ErrMalformed, PayloadName, err)
	}
	if hdr.Name != PayloadName || hdr.Typeflag != tar.TypeReg {
		return m, fmt.Errorf("%w: member %q where %s belongs", ErrMalformed, hdr.Name, PayloadName)
	}
	if hdr.Size != m.PayloadSize {
		return m, fmt.Errorf("%w: %s is %d bytes, the manifest says %d", ErrHash, PayloadName, hdr.Size, m.PayloadSize)
	}
	if err := checkPayload(tr, m); err != nil {
		return m, err
	}
	if _, err := tr.Next(); err != io.EOF {
		return m, fmt.Errorf("%w: data after %s", ErrMalformed, PayloadName)
	}
	return m, nil
}

func readMember(tr *tar.Reader, name string, limit int64) ([]byte, error) {
	hdr, err := tr.Next()
	if err != nil {
		return nil, fmt.Errorf("%w: no %s: %v", ErrMalformed, name, err)
	}
	if hdr.Name != name || hdr.Typeflag != tar.TypeReg {
		return nil, fmt.Errorf("%w: member %q where %s belongs", ErrMalformed, hdr.Name, name)
	}
	if hdr.Size < 0 || hdr.Size > limit {
		return nil, fmt.Errorf("%w: %s is %d bytes, at most %d allowed", ErrMalformed, name, hdr.Size, limit)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, name, err)
	}
	return b, nil
}

func signedBy(body, sig []byte, trusted []ed25519.PublicKey) bool {
	if len(sig) != ed25519.SignatureSize {
		return false
	}
	for _, k := range trusted {
		if len(k) == ed25519.PublicKeySize && ed25519.Verify(k, body, sig) {
			return true
		}
	}
	return false
}

func (p Policy) check(m Manifest) error {
	if p.Name != "" && m.Name != p.Name {
		return fmt.Errorf("%w: it is %s %s, this is %s", ErrAppliance, m.Name, m.Version, p.Name)
	}
	if p.Architecture != "" && m.Architecture != p.Architecture {
		return fmt.Errorf("%w: it is for %s, this is %s", ErrArchitecture, m.Architecture, p.Architecture)
	}
	if p.Running != "" && !p.AllowDowngrade && CompareVersions(m.Version, p.Running) < 0 {
		return fmt.Errorf("%w: %s is older than %s; allow a downgrade to install it", ErrDowngrade, m.Version, p.Running)
	}
	if p.MaxSize > 0 && m.Size > p.MaxSize {
		return fmt.Errorf("%w: the image is %d bytes, the root partition %d", ErrTooLarge, m.Size, p.MaxSize)
	}
	return nil
}

func checkPayload(payload io.Reader, m Manifest) error {
	payloadSum := sha256.New()
	dec, err := zstd.NewReader(io.TeeReader(payload, payloadSum), zstd.WithDecoderConcurrency(1))
	if err != nil {
		return err
	}
	defer dec.Close()
	imageSum := sha256.New()
	// One byte past the manifest's size shows an image that is too long
	// without decompressing the rest of it.
	n, err := io.Copy(imageSum, io.LimitReader(dec, m.Size+1))
	if err != nil {
		return fmt.Errorf("%w: %s does not decompress: %v", ErrHash, PayloadName, err)
	}
	if n != m.Size {
		return fmt.Errorf("%w: the image is %s bytes, the manifest says %d", ErrHash, sizeText(n, m.Size), m.Size)
	}
	// Read the compressed rest (a zstd frame's end, or trailing data) so
	// its hash covers every byte of the member.
	if _, err := io.Copy(io.Discard, payload); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformed, PayloadName, err)
	}
	if got := hex.EncodeToString(payloadSum.Sum(nil)); got != m.PayloadSHA256 {
		return fmt.Errorf("%w: %s has SHA-256 %s, the manifest says %s", ErrHash, PayloadName, got, m.PayloadSHA256)
	}
	if got := hex.EncodeToString(imageSum.Sum(nil)); got != m.ImageSHA256 {
		return fmt.Errorf("%w: the image has SHA-256 %s, the manifest says %s", ErrHash, got, m.ImageSHA256)
	}
	return nil
}

func sizeText(n, want int64) string {
	if n > want {
		return fmt.Sprintf("more than %d", want)
	}
	return fmt.Sprint(n)
}
