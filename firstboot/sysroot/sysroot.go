// Package sysroot confines first boot's file access to a root directory, so
// that `outpost-firstboot --root DIR` and the tests touch nothing outside DIR.
//
// Unlike os.Root, which refuses symlinks that leave the directory, sysroot
// follows them the way the appliance's kernel would if DIR were "/": an
// absolute target such as etc/resolv.conf -> /run/systemd/resolve/stub-resolv.conf
// is re-rooted under DIR, and ".." never climbs above DIR. It is for trusted
// appliance images, not a security boundary against a hostile tree (a
// concurrent rename can race with resolution).
package sysroot

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/outpost-appliance/outpost/internal/atomicfile"
)

// maxLinks bounds symlink resolution, as the kernel's ELOOP does.
const maxLinks = 40

// Root is a directory standing for "/". The zero value is not usable; use New.
type Root struct {
	dir string
}

// New returns a Root at dir ("/" for the running system).
func New(dir string) (Root, error) {
	if dir == "" {
		dir = "/"
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Root{}, fmt.Errorf("root %s: %w", dir, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return Root{}, fmt.Errorf("root %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return Root{}, fmt.Errorf("root %s: not a directory", dir)
	}
	return Root{dir: abs}, nil
}

// Dir returns the root directory.
func (r Root) Dir() string { return r.dir }

// IsHost reports whether the root is the running system's "/".
func (r Root) IsHost() bool { return r.dir == "/" }

// Path resolves name (an absolute path inside the root, such as
// /etc/resolv.conf) to a host path, following every symlink, including the
// final one, inside the root. Missing components are allowed: the result is
// where the file would be created.
func (r Root) Path(name string) (string, error) {
	rel, err := r.resolve(name, true)
	if err != nil {
		return "", err
	}
	return filepath.Join(r.dir, filepath.FromSlash(rel)), nil
}

// resolve returns the slash-separated path relative to the root.
func (r Root) resolve(name string, followLast bool) (string, error) {
	todo := strings.Split(strings.Trim(path.Clean("/"+name), "/"), "/")
	var done []string // resolved components, relative to the root
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		cur := append(append([]string(nil), done...), c)
		if len(todo) == 0 && !followLast {
			done = cur
			break
		}
		host := filepath.Join(r.dir, filepath.FromSlash(strings.Join(cur, "/")))
		fi, err := os.Lstat(host)
		if errors.Is(err, fs.ErrNotExist) {
			// Nothing further can be a link: the rest is created as named.
			done = append(cur, todo...)
			todo = nil
			break
		}
		if err != nil {
			return "", fmt.Errorf("%s (under %s): %w", name, r.dir, err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = cur
			continue
		}
		links++
		if links > maxLinks {
			return "", fmt.Errorf("%s (under %s): too many levels of symbolic links", name, r.dir)
		}
		target, err := os.Readlink(host)
		if err != nil {
			return "", fmt.Errorf("%s (under %s): %w", name, r.dir, err)
		}
		if strings.HasPrefix(target, "/") {
			done = nil
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return strings.Join(done, "/"), nil
}

// ReadFile reads the file at name inside the root.
func (r Root) ReadFile(name string) ([]byte, error) {
	p, err := r.Path(name)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}

// Stat returns information about name inside the root.
func (r Root) Stat(name string) (fs.FileInfo, error) {
	p, err := r.Path(name)
	if err != nil {
		return nil, err
	}
	return os.Stat(p)
}

// Remove removes name inside the root; a missing file is not an error.
func (r Root) Remove(name string) error {
	p, err := r.Path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// WriteFile replaces name inside the root with data so that readers see
// either the old or the new content, never a torn file, even after a power
// cut: it writes a temporary file in the same directory, syncs it, renames it
// over name and syncs the directory. Parent directories are created (0755).
// A symlink at name is followed and its target is replaced.
func (r Root) WriteFile(name string, data []byte, perm fs.FileMode) error {
	return r.write(name, data, perm, true)
}

// ReplaceFile is WriteFile without the syncs: readers never see a torn
// file, but a power cut may lose the update. For files regenerated on every
// run (status, banner), where an fsync per update only costs time.
func (r Root) ReplaceFile(name string, data []byte, perm fs.FileMode) error {
	return r.write(name, data, perm, false)
}

func (r Root) write(name string, data []byte, perm fs.FileMode, durable bool) error {
	p, err := r.Path(name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	err = atomicfile.Write(p, perm, atomicfile.Options{NoSync: !durable}, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
	if err != nil {
		// atomicfile names the resolved path under the root; the caller
		// knows name, so name the cause with it.
		if cause := errors.Unwrap(err); cause != nil {
			err = cause
		}
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// Symlink makes name a symlink to target (taken as it is: an absolute
// target names a path inside the appliance), replacing what name was.
func (r Root) Symlink(target, name string) error {
	rel, err := r.resolve(name, false)
	if err != nil {
		return err
	}
	p := filepath.Join(r.dir, filepath.FromSlash(rel))
	if cur, err := os.Readlink(p); err == nil && cur == target {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("symlink %s: %w", name, err)
	}
	tmp := p + ".outpost-tmp"
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("symlink %s: %w", name, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("symlink %s: %w", name, err)
	}
	return nil
}
