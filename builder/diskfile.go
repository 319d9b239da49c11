package builder

import (
	"bytes"
	"io/fs"
	"os"

	"github.com/diskfs/go-diskfs/backend"
	"golang.org/x/sys/unix"
)

// diskFile is the go-diskfs backend over the raw image. Writes of whole
// zero blocks punch holes instead (go-diskfs zeroes the journal explicitly),
// so the raw file stays sparse and only used space costs bytes.
type diskFile struct{ f *os.File }

var _ backend.Storage = (*diskFile)(nil)

const holeBlock = 4096

var zeros = make([]byte, 1<<20)

func (d *diskFile) Stat() (fs.FileInfo, error)                { return d.f.Stat() }
func (d *diskFile) Read(b []byte) (int, error)                { return d.f.Read(b) }
func (d *diskFile) Close() error                              { return nil } // Build closes the file
func (d *diskFile) ReadAt(b []byte, off int64) (int, error)   { return d.f.ReadAt(b, off) }
func (d *diskFile) Seek(off int64, whence int) (int64, error) { return d.f.Seek(off, whence) }
func (d *diskFile) Sys() (*os.File, error)                    { return d.f, nil }
func (d *diskFile) Writable() (backend.WritableFile, error)   { return d, nil }
func (d *diskFile) Path() string                              { return d.f.Name() }

func (d *diskFile) WriteAt(b []byte, off int64) (int, error) {
	if len(b) < 2*holeBlock || !isZero(b) {
		return d.f.WriteAt(b, off)
	}
	// Punch the whole blocks inside [off, off+len), write the edges.
	start := (off + holeBlock - 1) / holeBlock * holeBlock
	end := (off + int64(len(b))) / holeBlock * holeBlock
	if err := unix.Fallocate(int(d.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, start, end-start); err != nil {
		return d.f.WriteAt(b, off) // no hole punching here: write the zeros
	}
	if head := start - off; head > 0 {
		if _, err := d.f.WriteAt(b[:head], off); err != nil {
			return 0, err
		}
	}
	if tail := off + int64(len(b)) - end; tail > 0 {
		if _, err := d.f.WriteAt(b[len(b)-int(tail):], end); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

func isZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeros))
		if !bytes.Equal(b[:n], zeros[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}
