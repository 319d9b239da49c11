// Package atomicfile writes files that must never be seen half-written: the
// data goes to a temporary name in the same directory, is synced, and is
// renamed over the target, so a reader or a crash sees the old file or the
// new one, never a torn or empty one.
//
// The mode is set before any byte is written, so a secret is never readable
// by others, not even for an instant. It is the one implementation of the
// pattern in outpost; it ships in the appliance, so it imports only the
// standard library.
package atomicfile

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Options tune a write. The zero value is the durable default.
type Options struct {
	// NoSync skips the fsync of the file and its directory: for files
	// rewritten often whose loss on power cut costs nothing (status files).
	NoSync bool
}

// WriteFile writes data to path with mode perm, atomically and durably.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	return Write(path, perm, Options{}, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// Write streams fill into a temporary file beside path and renames it over
// path when fill and the sync succeed; on any failure path is untouched and
// the temporary file is removed. Errors name path.
//
// fill is given the temporary *os.File itself, so a writer that can do
// better with a file (disk/raw seeks over zeros to leave holes) still can;
// it must write from the current offset and not close the file.
func Write(path string, perm fs.FileMode, opts Options, fill func(w io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w (is the directory writable?)", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("write %s: %w", path, err)
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if err = fill(f); err != nil {
		return err
	}
	if !opts.NoSync {
		if err = f.Sync(); err != nil {
			return err
		}
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	if !opts.NoSync {
		if d, derr := os.Open(dir); derr == nil {
			d.Sync()
			d.Close()
		}
	}
	return nil
}
