// Package raw writes a disk.Image as a sparse raw image file: data regions
// are copied, holes and all-zero 64 KiB blocks are left as holes in the new
// file (never written), so the copy uses only the space the data needs on
// filesystems with sparse-file support.
package raw

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/outpost-appliance/outpost/disk"
)

// WriteFile writes img to path as a raw image of img.Size() rounded up to
// 64 KiB. It writes to a temporary file in the same directory, syncs it and
// renames it over path, so path is either complete or untouched.
func WriteFile(path string, img disk.Image) (err error) {
	capacity, err := disk.Capacity(img)
	if err != nil {
		return fmt.Errorf("raw: %w", err)
	}
	exts, err := img.Extents()
	if err != nil {
		return fmt.Errorf("raw: list data regions: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("raw: create %s: %w (is the directory writable?)", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Truncate(capacity); err != nil {
		return fmt.Errorf("raw: size %s: %w", f.Name(), err)
	}
	buf := make([]byte, disk.GrainSize)
	for _, r := range disk.Grains(exts, capacity) {
		for off := r.Off; off < r.End(); off += disk.GrainSize {
			if err := disk.ReadGrain(img, buf, off); err != nil {
				return fmt.Errorf("raw: %w", err)
			}
			if disk.IsZero(buf) {
				continue
			}
			if _, err := f.WriteAt(buf, off); err != nil {
				return fmt.Errorf("raw: write %s: %w", f.Name(), err)
			}
		}
	}
	if err := f.Chmod(0o644); err != nil {
		return fmt.Errorf("raw: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("raw: sync %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("raw: close %s: %w", f.Name(), err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("raw: %w", err)
	}
	return nil
}
