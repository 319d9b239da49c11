package disk

import (
	"io"

	"github.com/outpost-appliance/outpost/internal/atomicfile"
)

// Info describes an image a writer wrote.
type Info struct {
	// Written is the number of bytes written to w: the file size.
	Written int64
	// Capacity is the virtual size in bytes: Size rounded up to GrainSize.
	Capacity int64
	// Populated is the number of bytes in non-zero grains, the data the
	// output stores (OVF's ovf:populatedSize).
	Populated int64
}

// WriteFunc is the shape of every format writer (raw.Write, qcow2.Write,
// vmdk.Write): it writes img to w in one format tuned by opt, whose zero
// value is valid, and reports what it wrote. img must not change while it
// is written. On error, what was written to w is incomplete and must be
// discarded.
//
// Writers stream front to back into any io.Writer; a writer that can do
// better with a file (raw leaves holes in an *os.File) says so.
type WriteFunc[O any] func(w io.Writer, img Image, opt O) (Info, error)

// WriteFile writes img to path with write, so that path is either complete
// or untouched: it writes a temporary file in the same directory, syncs it
// and renames it over path, mode 0644 (internal/atomicfile). write is given
// the temporary *os.File, so a writer that leaves holes in a file can.
func WriteFile[O any](path string, img Image, write WriteFunc[O], opt O) (Info, error) {
	var info Info
	err := atomicfile.Write(path, 0o644, atomicfile.Options{}, func(w io.Writer) (err error) {
		info, err = write(w, img, opt)
		return err
	})
	return info, err
}
