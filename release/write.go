package release

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Info names what a bundle holds; Write fills in the sizes and hashes.
type Info struct {
	Name         string
	Version      string
	Architecture string
}

// Contents is what a bundle carries: the root partition's image and the
// kernel and initrd that boot it.
type Contents struct {
	// Image holds the root partition's bytes, Size of them (a multiple of
	// 512). Only its non-zero 4 KiB blocks go into the bundle; they are
	// read twice (once to find them, once to copy them).
	Image io.ReaderAt
	Size  int64
	// Kernel is required; Initrd may be empty (a release without one).
	Kernel []byte
	Initrd []byte
}

// Write writes a signed bundle of c to w. The sparse stream of the image
// is compressed to a temporary file in scratchDir first ("" means
// os.TempDir) so that the manifest, which carries the payload's hash, comes
// first in the bundle; memory stays bounded. The same contents and key give
// the same bytes.
func Write(w io.Writer, info Info, c Contents, key ed25519.PrivateKey, scratchDir string) (Manifest, error) {
	if len(key) != ed25519.PrivateKeySize {
		return Manifest{}, errors.New("release: no valid Ed25519 release key")
	}
	if c.Size <= 0 || c.Size%sectorSize != 0 {
		return Manifest{}, fmt.Errorf("release: the root image is %d bytes, want a positive multiple of %d", c.Size, sectorSize)
	}
	if len(c.Kernel) == 0 {
		return Manifest{}, errors.New("release: no kernel; a bundle carries the kernel its root boots with")
	}
	tmp, err := os.CreateTemp(scratchDir, ".outpost-bundle-*.zst")
	if err != nil {
		return Manifest{}, fmt.Errorf("release: scratch file: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()

	streamSum, payloadSum := sha256.New(), sha256.New()
	counted := &counter{w: io.MultiWriter(tmp, payloadSum)}
	enc, err := zstd.NewWriter(counted, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithWindowSize(maxWindow))
	if err != nil {
		return Manifest{}, err
	}
	if err := writeStream(io.MultiWriter(enc, streamSum), c.Image, c.Size); err != nil {
		enc.Close()
		return Manifest{}, fmt.Errorf("release: %w", err)
	}
	if err := enc.Close(); err != nil {
		return Manifest{}, fmt.Errorf("release: compressing the image: %w", err)
	}
	m := Manifest{
		Format: FormatVersion, Name: info.Name, Version: info.Version, Architecture: info.Architecture,
		Size: c.Size, StreamSHA256: hex.EncodeToString(streamSum.Sum(nil)),
		PayloadSize: counted.n, PayloadSHA256: hex.EncodeToString(payloadSum.Sum(nil)),
		KernelSize: int64(len(c.Kernel)), KernelSHA256: sum(c.Kernel),
		InitrdSize: int64(len(c.Initrd)),
	}
	if len(c.Initrd) > 0 {
		m.InitrdSHA256 = sum(c.Initrd)
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
		// Fixed metadata: the same contents and key give the same bundle.
		hdr := &tar.Header{Name: name, Mode: 0o644, Size: size, ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := io.Copy(tw, r)
		return err
	}
	members := []struct {
		name string
		size int64
		r    io.Reader
	}{
		{ManifestName, int64(len(body)), bytes.NewReader(body)},
		{SignatureName, int64(len(sig)), bytes.NewReader(sig)},
		{KernelName, m.KernelSize, bytes.NewReader(c.Kernel)},
	}
	if m.InitrdSize > 0 {
		members = append(members, struct {
			name string
			size int64
			r    io.Reader
		}{InitrdName, m.InitrdSize, bytes.NewReader(c.Initrd)})
	}
	members = append(members, struct {
		name string
		size int64
		r    io.Reader
	}{PayloadName, counted.n, tmp})
	for _, mb := range members {
		if err := member(mb.name, mb.size, mb.r); err != nil {
			return Manifest{}, fmt.Errorf("release: writing the bundle: %s: %w", mb.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return Manifest{}, fmt.Errorf("release: writing the bundle: %w", err)
	}
	return m, nil
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// writeStream writes the sparse stream of the size bytes of img to w: a
// record (offset, length, bytes) for each run of non-zero blocks, then
// the end record (size, 0).
func writeStream(w io.Writer, img io.ReaderAt, size int64) error {
	scan := make([]byte, maxChunk)
	copyBuf := make([]byte, maxChunk)
	zero := make([]byte, blockSize)
	var hdr [recordSize]byte
	record := func(off, n int64) error {
		binary.BigEndian.PutUint64(hdr[:8], uint64(off))
		binary.BigEndian.PutUint64(hdr[8:], uint64(n))
		_, err := w.Write(hdr[:])
		return err
	}
	extent := func(from, to int64) error {
		if err := record(from, to-from); err != nil {
			return err
		}
		n, err := io.CopyBuffer(w, io.NewSectionReader(img, from, to-from), copyBuf)
		if err == nil && n != to-from {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return fmt.Errorf("reading the root image at %d: %w", from, err)
		}
		return nil
	}
	start := int64(-1) // the non-zero run being scanned, if any
	for off := int64(0); off < size; {
		p := scan[:min(int64(len(scan)), size-off)]
		if n, err := img.ReadAt(p, off); n < len(p) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("reading the root image at %d: %w", off+int64(n), err)
		}
		for b := 0; b < len(p); b += blockSize {
			blk := p[b:min(b+blockSize, len(p))]
			switch nonZero := !bytes.Equal(blk, zero[:len(blk)]); {
			case nonZero && start < 0:
				start = off + int64(b)
			case !nonZero && start >= 0:
				if err := extent(start, off+int64(b)); err != nil {
					return err
				}
				start = -1
			}
		}
		off += int64(len(p))
	}
	if start >= 0 {
		if err := extent(start, size); err != nil {
			return err
		}
	}
	return record(size, 0)
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
