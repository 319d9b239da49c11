package builder

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// entry is one node of a root filesystem, whatever its source.
type entry struct {
	Path     string // slash-separated, relative to the root, no leading '/'; "" is the root
	Mode     fs.FileMode
	UID, GID int
	ModTime  time.Time
	Size     int64
	Link     string // symlink target, or hard-link target path for Hardlink
	Hardlink bool
	Major    uint32 // device nodes
	Minor    uint32
	open     func() (io.ReadCloser, error) // regular files
}

// source walks a root filesystem in a deterministic order, parents before
// children.
type source interface {
	Walk(fn func(e *entry) error) error
	String() string
}

// openSource returns the source at p: a directory, or a tar archive (plain
// or gzip-compressed).
func openSource(p string) (source, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("root filesystem: %w; give a directory or a tar archive with --rootfs", err)
	}
	if fi.IsDir() {
		return dirSource(p), nil
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("root filesystem %s: not a directory or a tar archive", p)
	}
	return tarSource(p), nil
}

type dirSource string

func (d dirSource) String() string { return string(d) }

func (d dirSource) Walk(fn func(e *entry) error) error {
	root := string(d)
	// Files with several names inside the tree become hard links to the
	// first name visited.
	seen := map[[2]uint64]string{}
	// WalkDir visits in lexical order, parents first: deterministic.
	return filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("reading root filesystem: %w", err)
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == "." {
			rel = ""
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("reading root filesystem: %w", err)
		}
		e := &entry{Path: rel, Mode: fi.Mode(), ModTime: fi.ModTime(), Size: fi.Size()}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			e.UID, e.GID = int(st.Uid), int(st.Gid)
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			if e.Link, err = os.Readlink(p); err != nil {
				return fmt.Errorf("reading root filesystem: %w", err)
			}
		case fi.Mode().IsRegular():
			e.open = func() (io.ReadCloser, error) { return os.Open(p) }
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
				k := [2]uint64{uint64(st.Dev), st.Ino}
				if first, ok := seen[k]; ok {
					e.Hardlink, e.Link, e.open = true, first, nil
				} else {
					seen[k] = rel
				}
			}
		case fi.Mode()&fs.ModeDevice != 0:
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				e.Major, e.Minor = unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))
			}
		}
		return fn(e)
	})
}

type tarSource string

func (t tarSource) String() string { return string(t) }

func (t tarSource) Walk(fn func(e *entry) error) error {
	f, err := os.Open(string(t))
	if err != nil {
		return fmt.Errorf("root filesystem: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	var r io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("root filesystem %s: %w", t, err)
		}
		defer zr.Close()
		r = zr
	}
	tr := tar.NewReader(r)
	seen := map[string]bool{"": true}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			if len(seen) == 1 {
				return fmt.Errorf("root filesystem %s: empty tar archive", t)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("root filesystem %s: not a readable tar archive: %w", t, err)
		}
		name := cleanTarPath(h.Name) // "../x" and "/x" both become "x"
		// Tars may omit parent directories: make them, root-owned 0755.
		if dir := path.Dir(name); name != "" && dir != "." {
			var missing []string
			for d := dir; d != "." && !seen[d]; d = path.Dir(d) {
				missing = append(missing, d)
			}
			for i := len(missing) - 1; i >= 0; i-- {
				seen[missing[i]] = true
				if err := fn(&entry{Path: missing[i], Mode: fs.ModeDir | 0o755, ModTime: h.ModTime}); err != nil {
					return err
				}
			}
		}
		e := &entry{Path: name, UID: h.Uid, GID: h.Gid, ModTime: h.ModTime, Size: h.Size}
		perm := fs.FileMode(h.Mode).Perm()
		if h.Mode&0o4000 != 0 {
			perm |= fs.ModeSetuid
		}
		if h.Mode&0o2000 != 0 {
			perm |= fs.ModeSetgid
		}
		if h.Mode&0o1000 != 0 {
			perm |= fs.ModeSticky
		}
		switch h.Typeflag {
		case tar.TypeDir:
			e.Mode = fs.ModeDir | perm
			if seen[name] && name != "" {
				// A directory listed after its children: only its metadata.
				e.Size = 0
			}
		case tar.TypeReg: // the reader reports old TypeRegA members as TypeReg
			e.Mode = perm
			data := io.LimitReader(tr, h.Size)
			e.open = func() (io.ReadCloser, error) { return io.NopCloser(data), nil }
		case tar.TypeSymlink:
			e.Mode = fs.ModeSymlink | 0o777
			e.Link = h.Linkname
		case tar.TypeLink:
			e.Mode = perm
			e.Hardlink = true
			e.Link = cleanTarPath(h.Linkname)
		case tar.TypeChar:
			e.Mode = fs.ModeDevice | fs.ModeCharDevice | perm
			e.Major, e.Minor = uint32(h.Devmajor), uint32(h.Devminor)
		case tar.TypeBlock:
			e.Mode = fs.ModeDevice | perm
			e.Major, e.Minor = uint32(h.Devmajor), uint32(h.Devminor)
		case tar.TypeFifo:
			e.Mode = fs.ModeNamedPipe | perm
		case tar.TypeXGlobalHeader:
			continue
		default:
			return fmt.Errorf("root filesystem %s: member %q has unsupported type %q", t, h.Name, h.Typeflag)
		}
		seen[name] = true
		if err := fn(e); err != nil {
			return err
		}
	}
}

func cleanTarPath(name string) string {
	p := path.Clean("/" + name)
	return strings.TrimPrefix(p, "/")
}

// errStopWalk ends a walk early.
var errStopWalk = errors.New("walk stopped")

// contents opens the regular files of src by path, in walk order (the
// order ext4img.Image.Write asks for them), and returns each one's size. A
// directory's files are opened directly; a tar archive is read a second
// time, in step with the requests. stop ends that second read.
func contents(ctx context.Context, src source) (open func(name string) (io.ReadCloser, int64, error), stop func()) {
	if d, ok := src.(dirSource); ok {
		return func(name string) (io.ReadCloser, int64, error) {
			if err := ctx.Err(); err != nil {
				return nil, 0, err
			}
			f, err := os.Open(filepath.Join(string(d), filepath.FromSlash(name)))
			if err != nil {
				return nil, 0, err
			}
			fi, err := f.Stat()
			if err != nil {
				f.Close()
				return nil, 0, err
			}
			return f, fi.Size(), nil
		}, func() {}
	}
	next, stop := iter.Pull2(func(yield func(*entry, error) bool) {
		err := src.Walk(func(e *entry) error {
			if !e.Mode.IsRegular() || e.Hardlink || e.Size == 0 {
				return nil
			}
			if !yield(e, nil) {
				return errStopWalk
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStopWalk) {
			yield(nil, err)
		}
	})
	return func(name string) (io.ReadCloser, int64, error) {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		for {
			e, err, ok := next()
			if !ok {
				return nil, 0, fmt.Errorf("root filesystem %s: /%s missing when read again", src, name)
			}
			if err != nil {
				return nil, 0, err
			}
			if e.Path == name {
				r, err := e.open()
				return r, e.Size, err
			}
		}
	}, stop
}
