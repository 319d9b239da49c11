package release

import (
	"archive/tar"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/klauspost/compress/zstd"
)

// Target receives a bundle's contents as Read checks them.
type Target interface {
	// BootFile receives a boot file: name is release.KernelName
	// ("vmlinuz") or release.InitrdName ("initrd.img"); r yields its bytes
	// (the size the manifest says); its hash is checked when r is drained,
	// and Read fails if it does not match. The read that reaches the end
	// returns an error wrapping ErrHash instead of io.EOF when the hash
	// does not match, so a Target that copies r with io.Copy sees the
	// failure before it keeps the file. Whatever BootFile leaves unread is
	// drained and checked after it returns.
	BootFile(name string, r io.Reader) error
	// WriteImageAt writes one extent of the root image at off; the image's
	// other bytes are zero. Extents come in increasing order, never
	// overlap and stay inside the manifest's Size; one longer than 1 MiB
	// comes in several calls of at most 1 MiB. p is valid only during
	// the call.
	WriteImageAt(p []byte, off int64) error
}

// Verify reads a whole bundle from r and checks it: Read with no Target.
func Verify(r io.Reader, trusted []ed25519.PublicKey, p Policy) (Manifest, error) {
	return Read(r, trusted, p, nil)
}

// Read checks a bundle as Verify does and, when t is not nil, hands its contents to t as they are read. A caller that must not write anything unverified calls Read with nil first (or Verify), then again with its Target.
//
// It reads the bundle once and checks, in order, that the manifest and its
// signature are well formed, that the manifest is signed by one of
// trusted, that it matches p (name, architecture, downgrade, then size:
// ErrTooLarge is reported before any member after the signature is read),
// then each member against the manifest's sizes and hashes. The image
// stream is decompressed with bounded memory, never beyond the manifest's
// size.
func Read(r io.Reader, trusted []ed25519.PublicKey, p Policy, t Target) (Manifest, error) {
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
	if err := readBootFile(tr, KernelName, m.KernelSize, m.KernelSHA256, t); err != nil {
		return m, err
	}
	if m.InitrdSize > 0 {
		if err := readBootFile(tr, InitrdName, m.InitrdSize, m.InitrdSHA256, t); err != nil {
			return m, err
		}
	}
	hdr, err := next(tr, PayloadName)
	if err != nil {
		return m, err
	}
	if hdr.Size != m.PayloadSize {
		return m, fmt.Errorf("%w: %s is %d bytes, the manifest says %d", ErrHash, PayloadName, hdr.Size, m.PayloadSize)
	}
	if err := readPayload(tr, m, t); err != nil {
		return m, err
	}
	if _, err := tr.Next(); err != io.EOF {
		return m, fmt.Errorf("%w: data after %s", ErrMalformed, PayloadName)
	}
	return m, nil
}

// next reads the header of the member that must come next.
func next(tr *tar.Reader, name string) (*tar.Header, error) {
	hdr, err := tr.Next()
	if err != nil {
		return nil, fmt.Errorf("%w: no %s: %v", ErrMalformed, name, err)
	}
	if hdr.Name != name || hdr.Typeflag != tar.TypeReg {
		return nil, fmt.Errorf("%w: member %q where %s belongs", ErrMalformed, hdr.Name, name)
	}
	return hdr, nil
}

func readMember(tr *tar.Reader, name string, limit int64) ([]byte, error) {
	hdr, err := next(tr, name)
	if err != nil {
		return nil, err
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

// readBootFile checks the boot file member name and hands it to t.
func readBootFile(tr *tar.Reader, name string, size int64, want string, t Target) error {
	hdr, err := next(tr, name)
	if err != nil {
		return err
	}
	if hdr.Size != size {
		return fmt.Errorf("%w: %s is %d bytes, the manifest says %d", ErrHash, name, hdr.Size, size)
	}
	cr := &checkedReader{r: tr, h: sha256.New(), name: name, want: want}
	if t != nil {
		if err := t.BootFile(name, cr); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return err
	}
	return nil
}

// checkedReader hashes a member as it is read and, at its end, returns
// io.EOF only when the hash is the manifest's.
type checkedReader struct {
	r          io.Reader
	h          hash.Hash
	name, want string
	err        error // sticky: the end's verdict, or a read error
}

func (c *checkedReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	switch {
	case err == io.EOF:
		c.err = io.EOF
		if got := hex.EncodeToString(c.h.Sum(nil)); got != c.want {
			c.err = fmt.Errorf("%w: %s has SHA-256 %s, the manifest says %s", ErrHash, c.name, got, c.want)
		}
	case err != nil:
		c.err = fmt.Errorf("%w: %s: %v", ErrMalformed, c.name, err)
	}
	return n, c.err
}

// readPayload decompresses the payload, checks its sparse stream and its
// hashes, and hands the image's extents to t.
func readPayload(payload io.Reader, m Manifest, t Target) error {
	payloadSum := sha256.New()
	dec, err := zstd.NewReader(io.TeeReader(payload, payloadSum), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(maxWindow))
	if err != nil {
		return err
	}
	defer dec.Close()
	streamSum := sha256.New()
	var targetErr error
	var write func(p []byte, off int64) error
	if t != nil {
		write = func(p []byte, off int64) error {
			if err := t.WriteImageAt(p, off); err != nil {
				targetErr = fmt.Errorf("writing the image at %d: %w", off, err)
				return targetErr
			}
			return nil
		}
	}
	streamErr := readStream(io.TeeReader(dec, streamSum), m.Size, write)
	if targetErr != nil {
		return targetErr
	}
	// Read the compressed rest (a zstd frame's end, or trailing data) so
	// the hash covers every byte of the member. A payload that is not the
	// one signed is reported as such, whatever its stream looked like.
	if _, err := io.Copy(payloadSum, payload); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformed, PayloadName, err)
	}
	if got := hex.EncodeToString(payloadSum.Sum(nil)); got != m.PayloadSHA256 {
		if streamErr != nil {
			return fmt.Errorf("%w: %s has SHA-256 %s, the manifest says %s (%v)", ErrHash, PayloadName, got, m.PayloadSHA256, streamErr)
		}
		return fmt.Errorf("%w: %s has SHA-256 %s, the manifest says %s", ErrHash, PayloadName, got, m.PayloadSHA256)
	}
	if streamErr != nil {
		return streamErr
	}
	if got := hex.EncodeToString(streamSum.Sum(nil)); got != m.StreamSHA256 {
		return fmt.Errorf("%w: the image stream has SHA-256 %s, the manifest says %s", ErrHash, got, m.StreamSHA256)
	}
	return nil
}

// readStream reads a sparse stream of an image of size bytes from r and
// calls write (when not nil) with its data, at most maxChunk bytes at a
// time. It refuses records out of order, overlapping, unaligned or out of
// range, a wrong end record and anything after it.
func readStream(r io.Reader, size int64, write func(p []byte, off int64) error) error {
	buf := make([]byte, maxChunk)
	var hdr [recordSize]byte
	var end uint64 // where the previous extent ended
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return streamErr(err)
		}
		off, n := binary.BigEndian.Uint64(hdr[:8]), binary.BigEndian.Uint64(hdr[8:])
		if n == 0 {
			if off != uint64(size) {
				return fmt.Errorf("%w: %s: the end record gives a %d-byte image, the manifest %d", ErrMalformed, PayloadName, off, size)
			}
			var one [1]byte
			k, err := io.ReadFull(r, one[:])
			if k > 0 {
				return fmt.Errorf("%w: %s: data after the image stream's end record", ErrMalformed, PayloadName)
			}
			if err != io.EOF {
				return streamErr(err)
			}
			return nil
		}
		switch {
		case off%sectorSize != 0 || n%sectorSize != 0:
			return fmt.Errorf("%w: %s: extent of %d bytes at %d is not aligned to %d bytes", ErrMalformed, PayloadName, n, off, sectorSize)
		case off < end:
			return fmt.Errorf("%w: %s: extent at %d overlaps or precedes the previous one, which ends at %d", ErrMalformed, PayloadName, off, end)
		case off > uint64(size) || n > uint64(size)-off:
			return fmt.Errorf("%w: %s: extent of %d bytes at %d goes beyond the image's %d bytes", ErrMalformed, PayloadName, n, off, size)
		}
		for done := uint64(0); done < n; {
			k := min(uint64(len(buf)), n-done)
			if _, err := io.ReadFull(r, buf[:k]); err != nil {
				return streamErr(err)
			}
			if write != nil {
				if err := write(buf[:k], int64(off+done)); err != nil {
					return err
				}
			}
			done += k
		}
		end = off + n
	}
}

func streamErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %s: the image stream ends before its end record", ErrMalformed, PayloadName)
	}
	return fmt.Errorf("%w: %s does not decompress: %v", ErrHash, PayloadName, err)
}
