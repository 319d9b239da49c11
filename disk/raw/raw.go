// Package raw writes a disk.Image as a raw image: the disk's bytes, its
// size rounded up to 64 KiB. Into a file (an io.Writer that can also seek
// and truncate, such as *os.File) holes and all-zero 64 KiB blocks are left
// as holes, never written, so the copy uses only the space the data needs on
// filesystems with sparse-file support; into any other writer the zeros are
// streamed.
package raw

import (
	"fmt"
	"io"

	"github.com/outpost-appliance/outpost/disk"
)

// Options tune the writer. There are none yet: the type keeps raw.Write the
// same shape as every other format's (disk.WriteFunc).
type Options struct{}

// sparseFile is a sink that can leave holes: seek past them, and set the
// size at the end in case the image ends in one.
type sparseFile interface {
	io.Seeker
	Truncate(size int64) error
}

// Write writes img to w as a raw image of img.Size() rounded up to 64 KiB.
// If w is a sparseFile (an *os.File), the image starts at w's current
// offset and zeros are skipped, not written. On error, what was written to
// w is incomplete and must be discarded.
func Write(w io.Writer, img disk.Image, _ Options) (disk.Info, error) {
	info, err := write(w, img)
	if err != nil {
		return info, fmt.Errorf("raw: %w", err)
	}
	return info, nil
}

func write(w io.Writer, img disk.Image) (disk.Info, error) {
	capacity, err := disk.Capacity(img)
	if err != nil {
		return disk.Info{}, err
	}
	info := disk.Info{Capacity: capacity}
	exts, err := img.Extents()
	if err != nil {
		return info, fmt.Errorf("list data regions: %w", err)
	}
	sparse, _ := w.(sparseFile)
	var start int64
	if sparse != nil {
		if start, err = sparse.Seek(0, io.SeekCurrent); err != nil {
			sparse = nil // a pipe or a terminal: stream the zeros
		}
	}
	buf := make([]byte, disk.GrainSize)
	var zeros []byte
	pos := int64(0) // next offset of the image that w receives
	skipTo := func(off int64) error {
		if pos == off {
			return nil
		}
		if sparse != nil {
			_, err := sparse.Seek(start+off, io.SeekStart)
			pos = off
			return err
		}
		if zeros == nil {
			zeros = make([]byte, disk.GrainSize)
		}
		for pos < off {
			n, err := w.Write(zeros[:min(int64(len(zeros)), off-pos)])
			pos += int64(n)
			if err != nil {
				return err
			}
		}
		return nil
	}
	for _, r := range disk.Grains(exts, capacity) {
		for off := r.Off; off < r.End(); off += disk.GrainSize {
			if err := disk.ReadGrain(img, buf, off); err != nil {
				return info, err
			}
			if disk.IsZero(buf) {
				continue
			}
			if err := skipTo(off); err != nil {
				return info, fmt.Errorf("write: %w", err)
			}
			n, err := w.Write(buf)
			pos += int64(n)
			if err != nil {
				return info, fmt.Errorf("write: %w", err)
			}
			info.Populated += disk.GrainSize
		}
	}
	if sparse != nil {
		if err := sparse.Truncate(start + capacity); err != nil {
			return info, fmt.Errorf("set the size: %w", err)
		}
		pos = capacity
	} else if err := skipTo(capacity); err != nil {
		return info, fmt.Errorf("write: %w", err)
	}
	info.Written = pos
	return info, nil
}
