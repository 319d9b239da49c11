package builder

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

// File is a file, directory or symlink a build adds to the root filesystem,
// or puts in place of what the tree has at that path: the appliance's own
// binaries, units and settings over a tree made from packages.
type File struct {
	// Path is absolute in the appliance: /usr/local/bin/outpost-firstboot.
	Path string
	// Mode holds the permission bits, and fs.ModeDir or fs.ModeSymlink for
	// a directory or a symlink; a regular file otherwise.
	Mode fs.FileMode
	// Data is a regular file's content, unless Source is set.
	Data []byte
	// Source is a file on the build host whose content is copied.
	Source string
	// Link is a symlink's target.
	Link     string
	UID, GID int
}

// overlaySource is a tree with files added, replaced and removed. Its walk
// is deterministic: the base tree's order, each replaced entry where the
// base had it, then the added ones sorted by path, parents first.
type overlaySource struct {
	base   source
	files  map[string]File // by relative path
	remove []string        // path.Match patterns, relative
	epoch  time.Time       // modification time of the added entries
}

func newOverlay(base source, files []File, remove []string, epoch time.Time) (source, error) {
	if len(files) == 0 && len(remove) == 0 {
		return base, nil
	}
	if epoch.IsZero() {
		epoch = time.Unix(0, 0).UTC()
	}
	o := &overlaySource{base: base, files: map[string]File{}, epoch: epoch}
	for _, f := range files {
		p := strings.TrimPrefix(path.Clean("/"+f.Path), "/")
		if p == "" || !strings.HasPrefix(f.Path, "/") {
			return nil, fmt.Errorf("overlay file %q: give an absolute path inside the appliance", f.Path)
		}
		if _, dup := o.files[p]; dup {
			return nil, fmt.Errorf("overlay file %s is given twice", f.Path)
		}
		if f.Source != "" {
			fi, err := os.Stat(f.Source)
			if err != nil {
				return nil, fmt.Errorf("overlay file %s: %w", f.Path, err)
			}
			if !fi.Mode().IsRegular() {
				return nil, fmt.Errorf("overlay file %s: source %s is not a regular file", f.Path, f.Source)
			}
		}
		o.files[p] = f
	}
	for _, r := range remove {
		p := strings.TrimPrefix(path.Clean("/"+r), "/")
		if _, err := path.Match(p, ""); err != nil || p == "" {
			return nil, fmt.Errorf("remove pattern %q: not a valid path pattern", r)
		}
		o.remove = append(o.remove, p)
	}
	return o, nil
}

func (o *overlaySource) String() string { return o.base.String() }

func (o *overlaySource) removed(p string) bool {
	for _, r := range o.remove {
		if ok, _ := path.Match(r, p); ok {
			return true
		}
	}
	return false
}

func (o *overlaySource) entry(p string, f File) (*entry, error) {
	e := &entry{Path: p, Mode: f.Mode, UID: f.UID, GID: f.GID, ModTime: o.epoch}
	switch {
	case f.Mode.IsDir():
	case f.Mode&fs.ModeSymlink != 0:
		e.Mode = fs.ModeSymlink | 0o777
		e.Link = f.Link
	case f.Source != "":
		fi, err := os.Stat(f.Source)
		if err != nil {
			return nil, fmt.Errorf("overlay file /%s: %w", p, err)
		}
		e.Size = fi.Size()
		src := f.Source
		e.open = func() (io.ReadCloser, error) { return os.Open(src) }
	default:
		e.Size = int64(len(f.Data))
		data := f.Data
		e.open = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
	}
	return e, nil
}

func (o *overlaySource) Walk(fn func(e *entry) error) error {
	dirs := map[string]bool{"": true}
	other := map[string]bool{} // paths the tree has that are not directories
	used := map[string]bool{}
	var skipped []string // removed directories: their children go too
	err := o.base.Walk(func(e *entry) error {
		for _, s := range skipped {
			if strings.HasPrefix(e.Path, s+"/") {
				return nil
			}
		}
		if f, ok := o.files[e.Path]; ok {
			used[e.Path] = true
			ne, err := o.entry(e.Path, f)
			if err != nil {
				return err
			}
			if ne.Mode.IsDir() {
				dirs[e.Path] = true
			} else if e.Mode.IsDir() {
				skipped = append(skipped, e.Path)
			}
			return fn(ne)
		}
		if e.Path != "" && o.removed(e.Path) {
			if e.Mode.IsDir() {
				skipped = append(skipped, e.Path)
			}
			return nil
		}
		if e.Mode.IsDir() {
			dirs[e.Path] = true
		} else {
			other[e.Path] = true
		}
		return fn(e)
	})
	if err != nil {
		return err
	}
	var added []string
	for p := range o.files {
		if !used[p] {
			added = append(added, p)
		}
	}
	sort.Strings(added)
	for _, p := range added {
		var missing []string
		for d := path.Dir(p); d != "." && !dirs[d]; d = path.Dir(d) {
			if other[d] {
				return fmt.Errorf("root filesystem %s: /%s is not a directory; the builder writes /%s there", o.base, d, p)
			}
			missing = append(missing, d)
		}
		for i := len(missing) - 1; i >= 0; i-- {
			dirs[missing[i]] = true
			if err := fn(&entry{Path: missing[i], Mode: fs.ModeDir | 0o755, ModTime: o.epoch}); err != nil {
				return err
			}
		}
		e, err := o.entry(p, o.files[p])
		if err != nil {
			return err
		}
		if e.Mode.IsDir() {
			dirs[p] = true
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}
