package imagebuild

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/outpost-appliance/outpost/builder"
	"github.com/outpost-appliance/outpost/builder/rootfs"
)

// module is the Go module whose commands an image spec may build (files[].go).
const module = "github.com/outpost-appliance/outpost"

// DefaultCacheDir is where Debian root filesystems are cached when
// Request.CacheDir is empty: $XDG_CACHE_HOME/outpost/rootfs or
// ~/.cache/outpost/rootfs.
func DefaultCacheDir() string {
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "outpost", "rootfs")
}

// tree is the root filesystem a build reads and what is laid over it.
type tree struct {
	source  string
	files   []builder.File
	remove  []string
	cleanup func()
}

// rootTree settles where the root filesystem comes from — override (the
// --rootfs flag), else the spec's rootfs.dir or rootfs.tar, else a Debian
// tree built from the spec's package list — and resolves the spec's files.
func (s settled) rootTree(ctx context.Context, override string) (*tree, error) {
	t := &tree{cleanup: func() {}, remove: s.Spec.Remove}
	spec := s.Spec
	switch {
	case override != "":
		t.source = override
	case spec.RootfsPath() != "":
		t.source = spec.RootfsPath()
	case spec.Rootfs.Debian != nil:
		d := spec.Rootfs.Debian
		cache := s.CacheDir
		if cache == "" {
			cache = DefaultCacheDir()
		}
		b := &rootfs.Builder{Progress: s.Log}
		res, err := b.Build(ctx, rootfs.Request{Suite: d.Suite, Mirror: d.Mirror, Variant: d.Variant, Packages: d.Packages, Epoch: s.epoch, CacheDir: cache})
		if err != nil {
			return nil, err
		}
		if res.Offline != "" {
			s.logf("note: the package mirror could not be reached, so the cached root filesystem %s was used; it may miss security updates\n", res.Key)
		}
		t.source = res.Tar
	default:
		return nil, ErrNoRootfs
	}
	if err := s.resolveFiles(ctx, t); err != nil {
		t.cleanup()
		return nil, err
	}
	return t, nil
}

// ErrNoRootfs means neither the command line nor the spec names a root
// filesystem.
var ErrNoRootfs = errors.New("no root filesystem: give --rootfs DIR|TAR, or set rootfs.dir, rootfs.tar or rootfs.debian in the spec")

func (s settled) resolveFiles(ctx context.Context, t *tree) error {
	var tmp string
	for i, f := range s.Spec.Files {
		bf := builder.File{Path: f.Path, Mode: f.FileMode(), Link: f.Link}
		switch {
		case f.Content != nil:
			bf.Data = []byte(*f.Content)
		case f.Src != "":
			if s.Spec.FS == nil {
				return fmt.Errorf("files[%d].src %s: the spec was not read from a directory", i, f.Src)
			}
			b, err := fs.ReadFile(s.Spec.FS, path.Clean(f.Src))
			if err != nil {
				return fmt.Errorf("files[%d].src: %w", i, err)
			}
			bf.Data = b
		case f.Go != "":
			if tmp == "" {
				d, err := os.MkdirTemp("", "outpost-bin-*")
				if err != nil {
					return err
				}
				tmp = d
				t.cleanup = func() { os.RemoveAll(d) }
			}
			out := filepath.Join(tmp, fmt.Sprintf("%d-%s", i, path.Base(f.Path)))
			if err := s.goBuild(ctx, f.Go, out); err != nil {
				return fmt.Errorf("files[%d].go %s: %w", i, f.Go, err)
			}
			bf.Source = out
		}
		t.files = append(t.files, bf)
	}
	return nil
}

// goBuild builds the main package pkg of the outpost module as a static,
// reproducible binary.
func (s settled) goBuild(ctx context.Context, pkg, out string) error {
	dir, err := s.moduleDir()
	if err != nil {
		return err
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("the Go toolchain is not on PATH; install Go 1.26 or give a tree with --rootfs")
	}
	s.logf("building %s\n", pkg)
	cmd := exec.CommandContext(ctx, goCmd, "build", "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -buildid= -X main.version="+s.Spec.Version, "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// moduleDir is the checkout of the outpost module the binaries come from:
// Request.ModuleDir, else the first directory holding its go.mod above the
// spec's file, else above the working directory.
func (s settled) moduleDir() (string, error) {
	if s.ModuleDir != "" {
		return s.ModuleDir, nil
	}
	var starts []string
	if s.Spec.Path != "" {
		if abs, err := filepath.Abs(filepath.Dir(s.Spec.Path)); err == nil {
			starts = append(starts, abs)
		}
	}
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	for _, d := range starts {
		for {
			if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module "+module+"\n")) {
				return d, nil
			}
			parent := filepath.Dir(d)
			if parent == d {
				break
			}
			d = parent
		}
	}
	return "", fmt.Errorf("the spec builds Go binaries from the outpost source, but no checkout of %s was found above the spec or the working directory; run from a checkout or give a tree with --rootfs", module)
}
