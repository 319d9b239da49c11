// Package disk is outpost's virtual-disk abstraction: Image, a disk seen as
// a byte range with known data regions, and WriteFunc, the one shape of
// every format writer (WriteFile runs one into a file atomically). The
// formats are sibling packages, each a sink of Image with that signature:
// disk/raw (sparse raw), disk/qcow2 (qcow2 v3) and disk/vmdk
// (streamOptimized VMDK); disk/disktest proves any of them against qemu-img.
// Raw is the one Image source here (a sparse file read through
// SEEK_DATA/SEEK_HOLE), so writers skip holes without reading them.
//
// It is not a filesystem or partition library (that is go-diskfs and
// builder/ext4img, in builder/), and it knows nothing of OVF or OVAs
// (package ova takes finished disk files).
package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"golang.org/x/sys/unix"
)

// Image is a virtual disk. ReadAt reads its contents; bytes outside every
// Extent read as zeros (the writers never ask for them).
type Image interface {
	io.ReaderAt
	// Size is the virtual size in bytes. Writers round it up to a multiple
	// of GrainSize (64 KiB), the unit every output format allocates in;
	// the added tail reads as zeros.
	Size() int64
	// Extents lists the regions that may hold non-zero data, sorted by
	// offset, not overlapping, within [0, Size()). Regions outside them
	// read as zeros. An extent may still contain zeros: writers check.
	Extents() ([]Extent, error)
}

// Extent is a byte range of an Image that may hold data.
type Extent struct {
	Off, Len int64
}

// End is the offset just past the extent.
func (e Extent) End() int64 { return e.Off + e.Len }

// GrainSize is the allocation unit of the writers: VMDK grains and qcow2
// clusters are 64 KiB, and capacities are rounded up to it.
const GrainSize = 64 << 10

// ErrEmpty is returned by writers for an image of size 0, which no
// hypervisor can attach (qemu cannot even open a 0-byte VMDK).
var ErrEmpty = errors.New("disk image has size 0: give a disk of at least one byte")

// Capacity is the size a writer gives img: Size rounded up to GrainSize.
// It fails with ErrEmpty for an image of size 0.
func Capacity(img Image) (int64, error) {
	if img.Size() <= 0 {
		return 0, ErrEmpty
	}
	return (img.Size() + GrainSize - 1) / GrainSize * GrainSize, nil
}

// Raw is a raw disk image file. Its extents come from the filesystem's
// SEEK_DATA/SEEK_HOLE, so holes in a sparse file cost no reads.
type Raw struct {
	f    *os.File
	size int64
}

// OpenRaw opens the raw disk image at path for reading.
func OpenRaw(path string) (*Raw, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open raw disk: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open raw disk: %w", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("open raw disk %s: not a regular file (give a raw image file)", path)
	}
	return &Raw{f: f, size: fi.Size()}, nil
}

// ReadAt reads from the file; reads past the end of the file return io.EOF
// as os.File does.
func (r *Raw) ReadAt(p []byte, off int64) (int, error) { return r.f.ReadAt(p, off) }

// Size is the file's size in bytes.
func (r *Raw) Size() int64 { return r.size }

// Name is the file's path.
func (r *Raw) Name() string { return r.f.Name() }

// Close closes the file.
func (r *Raw) Close() error { return r.f.Close() }

// Extents walks the file's data regions with lseek(SEEK_DATA/SEEK_HOLE).
// On filesystems without hole support the whole file is one extent.
func (r *Raw) Extents() ([]Extent, error) {
	fd := int(r.f.Fd())
	var out []Extent
	off := int64(0)
	for off < r.size {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // no data after off
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
			return []Extent{{0, r.size}}, nil
		}
		if err != nil {
			return nil, fmt.Errorf("find data in %s at %d: %w", r.f.Name(), off, err)
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("find hole in %s at %d: %w", r.f.Name(), data, err)
		}
		if hole > r.size {
			hole = r.size
		}
		if hole > data {
			out = append(out, Extent{data, hole - data})
		}
		off = hole
	}
	return out, nil
}

// Grains turns extents into sorted, merged, non-overlapping ranges aligned
// to GrainSize and clipped to capacity: every grain that may hold data is in
// exactly one of them.
func Grains(exts []Extent, capacity int64) []Extent {
	s := append([]Extent(nil), exts...)
	sort.Slice(s, func(i, j int) bool { return s[i].Off < s[j].Off })
	var out []Extent
	for _, e := range s {
		if e.Len <= 0 {
			continue
		}
		start := e.Off / GrainSize * GrainSize
		end := min((e.End()+GrainSize-1)/GrainSize*GrainSize, capacity)
		if start >= end {
			continue
		}
		if n := len(out); n > 0 && start <= out[n-1].End() {
			if end > out[n-1].End() {
				out[n-1].Len = end - out[n-1].Off
			}
			continue
		}
		out = append(out, Extent{start, end - start})
	}
	return out
}

// ReadGrain fills buf (usually one or more grains) from img at off, with
// zeros for anything past the image's end: the tail of the last grain.
func ReadGrain(img Image, buf []byte, off int64) error {
	n := min(int64(len(buf)), max(img.Size()-off, 0))
	if n > 0 {
		got, err := img.ReadAt(buf[:n], off)
		if int64(got) < n {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("read disk at offset %d: %w", off, err)
		}
	}
	clear(buf[n:])
	return nil
}

// IsZero reports whether b holds only zero bytes.
func IsZero(b []byte) bool {
	// 64 bytes per step with 8-byte loads: this runs over every data grain.
	le := binary.LittleEndian
	for len(b) >= 64 {
		if le.Uint64(b)|le.Uint64(b[8:])|le.Uint64(b[16:])|le.Uint64(b[24:])|
			le.Uint64(b[32:])|le.Uint64(b[40:])|le.Uint64(b[48:])|le.Uint64(b[56:]) != 0 {
			return false
		}
		b = b[64:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
