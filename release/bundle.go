package release

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/outpost-appliance/outpost/appliance"
)

// Members of a bundle, in order. InitrdName is left out when the release
// has no initrd.
const (
	ManifestName  = "manifest.json"
	SignatureName = "manifest.sig"
	KernelName    = "vmlinuz"
	InitrdName    = "initrd.img"
	PayloadName   = "root.img.zst"
)

// FormatVersion is Manifest.Format for bundles this package writes.
const FormatVersion = 1

// The sparse stream's geometry: Write finds non-zero data in blocks of
// blockSize; every offset and length in a stream is a multiple of
// sectorSize; Read hands a Target at most maxChunk bytes at a time.
const (
	blockSize  = 4096
	sectorSize = 512
	maxChunk   = 1 << 20
	// recordSize is a record's header: offset and length, big-endian.
	recordSize = 16
	// maxWindow bounds the zstd decoder's memory; Write's encoder uses it.
	maxWindow = 8 << 20
)

// maxManifest bounds what is read before the signature is checked.
const maxManifest = 64 << 10

// Errors Read and Verify return (wrapped, with the detail a person needs).
var (
	ErrMalformed    = errors.New("not a valid release bundle")
	ErrSignature    = errors.New("bundle signature is not from a trusted release key")
	ErrHash         = errors.New("bundle payload does not match its manifest")
	ErrAppliance    = errors.New("bundle is for another appliance")
	ErrArchitecture = errors.New("bundle is for another architecture")
	ErrDowngrade    = errors.New("bundle is older than the running version")
	ErrTooLarge     = errors.New("bundle's image is larger than the root partition")
)

// Manifest describes a bundle's members; it is what the release key signs.
type Manifest struct {
	Format       int    `json:"format"`
	Name         string `json:"name"`
	Version      string `json:"version"`
	Architecture string `json:"architecture"`
	// Size is the root image's full size in bytes (a multiple of 512).
	// StreamSHA256 is the hash (hex) of the decompressed sparse stream,
	// which determines the image exactly; PayloadSize and PayloadSHA256
	// are the compressed member's (root.img.zst).
	Size          int64  `json:"size"`
	StreamSHA256  string `json:"stream_sha256"`
	PayloadSize   int64  `json:"payload_size"`
	PayloadSHA256 string `json:"payload_sha256"`
	// The kernel (vmlinuz) and the initrd (initrd.img) the root boots
	// with. A release without an initrd has InitrdSize 0, InitrdSHA256 ""
	// and no initrd.img member.
	KernelSize   int64  `json:"kernel_size"`
	KernelSHA256 string `json:"kernel_sha256"`
	InitrdSize   int64  `json:"initrd_size"`
	InitrdSHA256 string `json:"initrd_sha256"`
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
	if m.Size <= 0 || m.Size%sectorSize != 0 {
		add("size", "%d, want a positive multiple of %d bytes", m.Size, sectorSize)
	}
	if !hexSHA256.MatchString(m.StreamSHA256) {
		add("stream_sha256", "%q is not a lower-case hex SHA-256", m.StreamSHA256)
	}
	if m.PayloadSize <= 0 {
		add("payload_size", "%d, want a positive number of bytes", m.PayloadSize)
	}
	if !hexSHA256.MatchString(m.PayloadSHA256) {
		add("payload_sha256", "%q is not a lower-case hex SHA-256", m.PayloadSHA256)
	}
	if m.KernelSize <= 0 {
		add("kernel_size", "%d, want a positive number of bytes", m.KernelSize)
	}
	if !hexSHA256.MatchString(m.KernelSHA256) {
		add("kernel_sha256", "%q is not a lower-case hex SHA-256", m.KernelSHA256)
	}
	switch {
	case m.InitrdSize < 0:
		add("initrd_size", "%d, want a number of bytes (0: no initrd)", m.InitrdSize)
	case m.InitrdSize == 0 && m.InitrdSHA256 != "":
		add("initrd_sha256", "%q for no initrd (initrd_size 0), want \"\"", m.InitrdSHA256)
	case m.InitrdSize > 0 && !hexSHA256.MatchString(m.InitrdSHA256):
		add("initrd_sha256", "%q is not a lower-case hex SHA-256", m.InitrdSHA256)
	}
	return errors.Join(probs...)
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
