package builder

import (
	"bytes"
	"io/fs"
	"os"
	"slices"

	"github.com/diskfs/go-diskfs/backend"
	"golang.org/x/sys/unix"
)

// diskFile is the go-diskfs backend over the raw image: the partition
// table, the FAT32 EFI system partition and fixFAT32 go through it. The ext4
// root is not written through it: package ext4img writes the *os.File
// directly, in one pass.
//
// Small reads and writes go through a write-back cache of 4 KiB blocks:
// go-diskfs's FAT32 re-reads directory clusters on every path lookup and
// rewrites both FS information sectors with every FAT update, each a small
// pread or pwrite. Flush writes the dirty blocks; call it before reading the
// file by other means.
//
// Writes of whole zero blocks punch holes instead (go-diskfs writes its
// FATs, mostly zeros, in full on every allocation and zeroes new clusters),
// so the raw file stays sparse and only used space costs bytes.
type diskFile struct {
	f     *os.File
	cache map[int64]*cacheEntry // block number → contents
}

type cacheEntry struct {
	data  []byte
	dirty bool
}

const (
	cacheBlock    = 4096
	cacheMaxIO    = 64 << 10  // larger reads and writes bypass the cache
	cacheMaxBytes = 128 << 20 // flushed and emptied beyond this
	holeBlock     = 4096
)

var _ backend.Storage = (*diskFile)(nil)

var zeros = make([]byte, 1<<20)

func (d *diskFile) Stat() (fs.FileInfo, error)                { return d.f.Stat() }
func (d *diskFile) Read(b []byte) (int, error)                { return d.f.Read(b) }
func (d *diskFile) Close() error                              { return nil } // Build closes the file
func (d *diskFile) Seek(off int64, whence int) (int64, error) { return d.f.Seek(off, whence) }
func (d *diskFile) Writable() (backend.WritableFile, error)   { return d, nil }
func (d *diskFile) Path() string                              { return d.f.Name() }

// Sys hands out the file itself (go-diskfs only syncs it): flush first.
func (d *diskFile) Sys() (*os.File, error) {
	if err := d.Flush(); err != nil {
		return nil, err
	}
	return d.f, nil
}

// block returns the cached block blk, reading it unless the caller will
// overwrite all of it.
func (d *diskFile) block(blk int64, whole bool) (*cacheEntry, error) {
	if e, ok := d.cache[blk]; ok {
		return e, nil
	}
	if d.cache == nil || len(d.cache)*cacheBlock >= cacheMaxBytes {
		if err := d.Flush(); err != nil {
			return nil, err
		}
		d.cache = map[int64]*cacheEntry{}
	}
	e := &cacheEntry{data: make([]byte, cacheBlock)}
	if !whole {
		if _, err := d.f.ReadAt(e.data, blk*cacheBlock); err != nil {
			return nil, err
		}
	}
	d.cache[blk] = e
	return e, nil
}

func (d *diskFile) ReadAt(b []byte, off int64) (int, error) {
	if len(b) > cacheMaxIO || off < 0 {
		if err := d.Flush(); err != nil {
			return 0, err
		}
		return d.f.ReadAt(b, off)
	}
	n := 0
	for n < len(b) {
		pos := off + int64(n)
		blk := pos / cacheBlock
		e, err := d.block(blk, false)
		if err != nil {
			return n, err
		}
		n += copy(b[n:], e.data[pos-blk*cacheBlock:])
	}
	return n, nil
}

func (d *diskFile) WriteAt(b []byte, off int64) (int, error) {
	if len(b) > cacheMaxIO {
		n, err := d.writeThrough(b, off)
		d.update(b[:n], off)
		return n, err
	}
	n := 0
	for n < len(b) {
		pos := off + int64(n)
		blk := pos / cacheBlock
		inner := pos - blk*cacheBlock
		e, err := d.block(blk, inner == 0 && len(b)-n >= cacheBlock)
		if err != nil {
			return n, err
		}
		n += copy(e.data[inner:], b[n:])
		e.dirty = true
	}
	return n, nil
}

// update keeps cached blocks equal to the file after a direct write.
func (d *diskFile) update(b []byte, off int64) {
	if len(d.cache) == 0 || len(b) == 0 {
		return
	}
	first, last := off/cacheBlock, (off+int64(len(b))-1)/cacheBlock
	for blk := first; blk <= last; blk++ {
		if e, ok := d.cache[blk]; ok {
			start := blk * cacheBlock
			copy(e.data[max(off-start, 0):], b[max(start-off, 0):])
		}
	}
}

// Flush writes the dirty cached blocks, merging neighbours.
func (d *diskFile) Flush() error {
	var dirty []int64
	for blk, e := range d.cache {
		if e.dirty {
			dirty = append(dirty, blk)
		}
	}
	slices.Sort(dirty)
	var run []byte
	var runStart int64
	write := func() error {
		if len(run) == 0 {
			return nil
		}
		_, err := d.writeThrough(run, runStart*cacheBlock)
		run = run[:0]
		return err
	}
	for i, blk := range dirty {
		if i > 0 && blk != dirty[i-1]+1 {
			if err := write(); err != nil {
				return err
			}
		}
		if len(run) == 0 {
			runStart = blk
		}
		run = append(run, d.cache[blk].data...)
		d.cache[blk].dirty = false
	}
	return write()
}

func (d *diskFile) writeThrough(b []byte, off int64) (int, error) {
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
