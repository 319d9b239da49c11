package ext4img

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/internal/testtool"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// writeTree makes a source tree with what a root filesystem holds.
func writeTree(t *testing.T, dir string) {
	t.Helper()
	write := func(p string, b []byte, mode fs.FileMode) {
		full := filepath.Join(dir, p)
		must(t, os.MkdirAll(filepath.Dir(full), 0o755))
		must(t, os.WriteFile(full, b, mode))
		must(t, os.Chmod(full, mode))
	}
	write("etc/hostname", []byte("outpost\n"), 0o644)
	write("etc/empty", nil, 0o600)
	write("usr/bin/tool", []byte("#!/bin/sh\necho hi\n"), 0o755|fs.ModeSetuid)
	// Data, a run of zero blocks (a hole in the image), data, a partial tail.
	mixed := bytes.Repeat([]byte("0123456789abcdef"), 100000)
	mixed = append(mixed, make([]byte, 5*blockSize)...)
	mixed = append(mixed, bytes.Repeat([]byte("x"), 3*blockSize+17)...)
	write("usr/lib/mixed.bin", mixed, 0o644)
	write("usr/lib/zeros.bin", make([]byte, 3*blockSize), 0o644)
	// A directory of many entries spans several blocks.
	for i := range 400 {
		write(fmt.Sprintf("usr/share/many/file-with-a-longish-name-%03d", i), []byte{byte(i)}, 0o644)
	}
	must(t, os.Symlink("tool", filepath.Join(dir, "usr/bin/link")))
	must(t, os.Symlink("/"+strings.Repeat("long/", 20)+"target", filepath.Join(dir, "usr/bin/longlink")))
	must(t, os.Link(filepath.Join(dir, "etc/hostname"), filepath.Join(dir, "etc/hostname.link")))
	must(t, os.MkdirAll(filepath.Join(dir, "tmp"), 0o755))
	must(t, os.Chmod(filepath.Join(dir, "tmp"), fs.ModeSticky|0o777))
	must(t, syscall.Mkfifo(filepath.Join(dir, "run-fifo"), 0o640))
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	must(t, os.Chtimes(filepath.Join(dir, "etc/hostname"), old, old))
}

// addTree adds dir's entries in lexical order, hard links as such.
func addTree(t *testing.T, im *Image, dir string) Open {
	t.Helper()
	seen := map[[2]uint64]string{}
	must(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			rel = ""
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := Entry{Path: rel, Mode: fi.Mode(), UID: st.Uid, GID: st.Gid, ModTime: fi.ModTime(), Size: fi.Size()}
		if fi.Mode()&fs.ModeSymlink != 0 {
			e.Link, _ = os.Readlink(p)
		}
		if fi.Mode().IsRegular() && st.Nlink > 1 {
			k := [2]uint64{st.Dev, st.Ino}
			if first, ok := seen[k]; ok {
				e.Hardlink, e.Link = true, first
			} else {
				seen[k] = rel
			}
		}
		return im.Add(e)
	}))
	return func(p string) (io.ReadCloser, error) { return os.Open(filepath.Join(dir, p)) }
}

func writeImage(t *testing.T, im *Image, open Open, size int64) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "fs.img")
	f, err := os.Create(out)
	must(t, err)
	defer f.Close()
	must(t, f.Truncate(size))
	must(t, im.Write(f, 0, open))
	return out
}

func debugfs(t *testing.T, img, req string) string {
	t.Helper()
	out, err := exec.Command(testtool.Path(t, "debugfs"), "-R", req, img).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs -R %q: %v\n%s", req, err, out)
	}
	return string(out)
}

func e2fsck(t *testing.T, img string) {
	t.Helper()
	out, err := exec.Command(testtool.Path(t, "e2fsck"), "-fn", img).CombinedOutput()
	if err != nil {
		t.Fatalf("e2fsck -fn: %v\n%s", err, out)
	}
}

func TestTreeRoundTrip(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src)
	const size = 300 << 20 // three groups, the last one short
	im := New(size)
	open := addTree(t, im, src)
	// Nodes a user cannot make without privileges.
	must(t, im.Add(Entry{Path: "dev", Mode: fs.ModeDir | 0o755}))
	must(t, im.Add(Entry{Path: "dev/null", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o666, Major: 1, Minor: 3}))
	must(t, im.Add(Entry{Path: "dev/big", Mode: fs.ModeDevice | 0o660, GID: 6, Major: 259, Minor: 300}))
	must(t, im.Add(Entry{Path: "dev/sock", Mode: fs.ModeSocket | 0o600}))
	must(t, im.Add(Entry{Path: "dev/owned", Mode: 0o640, UID: 70000, GID: 70001}))
	must(t, im.Add(Entry{Path: "dev", Mode: fs.ModeDir | 0o750})) // again: new attributes, same entries
	must(t, im.Layout(Options{Label: "root", Time: time.Unix(1700000000, 0)}))
	img := writeImage(t, im, open, size)
	e2fsck(t, img)

	// Content, modes and symlinks as debugfs extracts them.
	out := filepath.Join(t.TempDir(), "out")
	must(t, os.Mkdir(out, 0o755))
	debugfs(t, img, "rdump / "+out)
	must(t, os.RemoveAll(filepath.Join(out, "lost+found")))
	must(t, os.RemoveAll(filepath.Join(out, "dev")))
	must(t, os.Remove(filepath.Join(src, "run-fifo"))) // rdump skips FIFOs
	if diff, err := exec.Command("diff", "-r", "--no-dereference", src, out).CombinedOutput(); err != nil {
		t.Errorf("diff -r source extracted: %v\n%s", err, diff)
	}
	for p, want := range map[string][]string{
		"/usr/bin/tool":      {"Mode:  04755", "Type: regular"},
		"/tmp":               {"Mode:  01777", "Type: directory"},
		"/dev":               {"Mode:  0750", "Links: 2"},
		"/usr/bin/link":      {"Type: symlink", `Fast link dest: "tool"`},
		"/usr/bin/longlink":  {"Type: symlink", "Size: 107"},
		"/etc/hostname":      {"Links: 2", "mtime: 0x5e0d5da5", "ctime: 0x5e0d5da5", "crtime: 0x5e0d5da5"},
		"/etc/hostname.link": {"Links: 2"},
		"/etc/empty":         {"Size: 0", "Mode:  0600"},
		"/run-fifo":          {"Type: FIFO", "Mode:  0640"},
		"/dev/null":          {"Type: character special", "Device major/minor number: 01:03"},
		"/dev/big":           {"Type: block special", "Device major/minor number: 259:300", "Group:     6"},
		"/dev/sock":          {"Type: socket"},
		"/dev/owned":         {"User: 70000   Group: 70001"},
		"/usr/share/many":    {"Size: 16384", "Links: 2"},
		"/usr/lib/mixed.bin": {"EXTENTS:\n(0-398):"},
		"/usr":               {"Links: 5"},
		"/lost+found":        {"Mode:  0700", "Size: 16384"},
	} {
		s := debugfs(t, img, "stat "+p)
		for _, w := range want {
			if !strings.Contains(s, w) {
				t.Errorf("debugfs stat %s: want %q in\n%s", p, w, s)
			}
		}
	}
	// The journal as e2fsprogs reads it: mkfs's default size, empty.
	dump, err := exec.Command(testtool.Path(t, "dumpe2fs"), "-h", img).CombinedOutput()
	must(t, err)
	for _, w := range []string{"has_journal", "Total journal size:       16M", "Journal start:            0", "Filesystem volume name:   root"} {
		if !strings.Contains(string(dump), w) {
			t.Errorf("dumpe2fs -h: want %q in\n%s", w, dump)
		}
	}
	// The zero blocks were not written: the image holds less than its files.
	var st syscall.Stat_t
	must(t, syscall.Stat(img, &st))
	if st.Blocks*512 > 10<<20 {
		t.Errorf("image uses %d bytes on disk: not sparse", st.Blocks*512)
	}
}

// TestDeepExtents writes a file that needs more than four extents (each at
// most 128 MiB), so the extent tree gets a leaf block.
func TestDeepExtents(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 600 MiB sparse file")
	}
	const size = 1 << 30
	const fileSize = 600<<20 + 123
	im := New(size)
	must(t, im.Add(Entry{Path: "big", Mode: 0o644, Size: fileSize}))
	must(t, im.Add(Entry{Path: "after", Mode: 0o644, Size: 5}))
	must(t, im.Layout(Options{}))
	want := sha256.New()
	gen := func() io.Reader { return io.LimitReader(&pattern{}, fileSize) }
	if _, err := io.Copy(want, gen()); err != nil {
		t.Fatal(err)
	}
	img := writeImage(t, im, func(p string) (io.ReadCloser, error) {
		if p == "after" {
			return io.NopCloser(strings.NewReader("after")), nil
		}
		return io.NopCloser(gen()), nil
	}, size)
	e2fsck(t, img)
	if s := debugfs(t, img, "stat /big"); !strings.Contains(s, "(ETB0)") || !strings.Contains(s, "Size: 629145723") {
		t.Errorf("want a depth-1 extent tree:\n%s", s)
	}
	cmd := exec.Command(testtool.Path(t, "debugfs"), "-R", "cat /big", img)
	got := sha256.New()
	cmd.Stdout = got
	must(t, cmd.Run())
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Error("content of /big read back by debugfs differs")
	}
	if s, err := exec.Command("debugfs", "-R", "cat /after", img).Output(); err != nil || string(s) != "after" {
		t.Errorf("/after = %q, %v", s, err)
	}
}

// pattern is mostly zeros with a marked block every 1 MiB.
type pattern struct{ off int64 }

func (p *pattern) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = 0
		if (p.off+int64(i))%(1<<20) < 16 {
			b[i] = byte((p.off + int64(i)) >> 20)
		}
	}
	p.off += int64(len(b))
	return len(b), nil
}

func TestRefuses(t *testing.T) {
	im := New(64 << 20)
	must(t, im.Add(Entry{Path: "huge", Mode: 0o644, Size: 100 << 20}))
	if err := im.Layout(Options{}); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "/huge") {
		t.Errorf("Layout = %v, want ErrTooLarge naming /huge", err)
	}
	im = New(64 << 20)
	for _, tt := range []struct {
		e   Entry
		msg string
	}{
		{Entry{Path: "a/b", Mode: 0o644}, "parent /a is not a directory added before"},
		{Entry{Path: "x", Hardlink: true, Link: "nope"}, "hard link to /nope, which was not added before"},
		{Entry{Path: "/abs", Mode: 0o644}, "not a clean relative path"},
	} {
		if err := im.Add(tt.e); err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("Add(%+v) = %v, want %q", tt.e, err, tt.msg)
		}
	}
}

func TestReproducible(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src)
	const size = 64 << 20
	img := func(seed byte) [32]byte {
		im := New(size)
		open := addTree(t, im, src)
		must(t, im.Layout(Options{UUID: [16]byte{1, 2, seed}, HashSeed: [16]byte{seed}, Time: time.Unix(1700000000, 0)}))
		p := writeImage(t, im, open, size)
		b, err := os.ReadFile(p)
		must(t, err)
		return sha256.Sum256(b)
	}
	if a, b := img(1), img(1); a != b {
		t.Error("same inputs, different images")
	}
	if a, b := img(1), img(2); a == b {
		t.Error("different UUIDs, same image: the comparison proves nothing")
	}
}
