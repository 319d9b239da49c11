package builder

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/outpost-appliance/outpost/internal/testtool"
	"golang.org/x/sys/unix"

	"github.com/outpost-appliance/outpost/appliance"
)

// testSpec is a small appliance for tests.
func testSpec(t *testing.T) *Spec {
	t.Helper()
	s, _, err := ParseSpec("test.yaml", []byte("name: test-appliance\nversion: 1.2.3\nhardware:\n  memory: 4096\n  disk: {size: 1GiB}\n"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// writeTree makes a small root filesystem with the things the builder must
// keep: modes, owners, symlinks (short and long), a setuid file, an empty
// file, a large file, and a fake kernel and initrd.
func writeTree(t *testing.T, dir string) {
	t.Helper()
	files := map[string]string{
		"boot/vmlinuz-6.1.0-9-cloud-amd64":     "old kernel",
		"boot/vmlinuz-6.1.0-28-cloud-amd64":    "new kernel",
		"boot/initrd.img-6.1.0-28-cloud-amd64": "initrd",
		"etc/hostname":                         "outpost\n",
		"etc/empty":                            "",
		"usr/bin/tool":                         "#!/bin/sh\necho hi\n",
		"opt/outpost/marker":                   "MARKER-42\n",
	}
	for p, c := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 300000) // 4.6 MiB, several extents' worth
	if err := os.WriteFile(filepath.Join(dir, "usr/big"), big, 0o600); err != nil {
		t.Fatal(err)
	}
	must(t, os.Chmod(filepath.Join(dir, "usr/bin/tool"), os.ModeSetuid|0o755))
	must(t, os.Symlink("tool", filepath.Join(dir, "usr/bin/link")))
	must(t, os.Symlink("/"+strings.Repeat("long/", 20)+"target", filepath.Join(dir, "usr/bin/longlink")))
	must(t, os.MkdirAll(filepath.Join(dir, "tmp"), 0o755))
	must(t, os.Chmod(filepath.Join(dir, "tmp"), os.ModeSticky|0o777))
	// A hard link inside the tree and a FIFO, which go-diskfs could not store.
	must(t, os.Link(filepath.Join(dir, "etc/hostname"), filepath.Join(dir, "etc/hostname.orig")))
	must(t, os.MkdirAll(filepath.Join(dir, "run"), 0o755))
	must(t, unix.Mkfifo(filepath.Join(dir, "run/initctl"), 0o600))
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	must(t, os.Chtimes(filepath.Join(dir, "etc/hostname"), old, old))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var testEpoch = time.Unix(1700000000, 0)

func build(t *testing.T, rootfs, out string) *Result {
	t.Helper()
	res, err := Build(context.Background(), testSpec(t), rootfs, out, Options{Epoch: testEpoch})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return res
}

// partition copies partition idx of the raw disk at raw into a file, using
// the offsets in the GPT as read by go-diskfs.
func partition(t *testing.T, raw string, idx int) string {
	t.Helper()
	d, err := diskfs.Open(raw, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	tbl, ok := d.Table.(*gpt.Table)
	if !ok {
		t.Fatalf("partition table is %T, want GPT", d.Table)
	}
	p := tbl.Partitions[idx-1]
	out := filepath.Join(t.TempDir(), filepath.Base(raw)+".p"+string(rune('0'+idx)))
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	start, length := int64(p.Start)*512, int64(p.End-p.Start+1)*512
	must(t, f.Truncate(length))
	must(t, eachDataBlockIn(raw, start, length, func(off int64, b []byte) error {
		_, err := f.WriteAt(b, off-start)
		return err
	}))
	return out
}

func TestBuildDirVerifiedByTools(t *testing.T) {
	e2fsck := testtool.Path(t, "e2fsck")
	fsckVfat := testtool.Path(t, "fsck.vfat")
	qemuImg := testtool.Path(t, "qemu-img")
	debugfs := testtool.Path(t, "debugfs")
	dir := t.TempDir()
	writeTree(t, dir)
	raw := filepath.Join(t.TempDir(), "disk.raw")
	res := build(t, dir, raw)

	if res.Kernel != "boot/vmlinuz-6.1.0-28-cloud-amd64" || res.Initrd != "boot/initrd.img-6.1.0-28-cloud-amd64" {
		t.Errorf("kernel %q initrd %q, want the newest", res.Kernel, res.Initrd)
	}
	fi, err := os.Stat(raw)
	must(t, err)
	if fi.Size() != 1<<30 {
		t.Errorf("raw size %d, want 1 GiB", fi.Size())
	}

	out, err := exec.Command(qemuImg, "info", "--output=json", raw).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img info: %v\n%s", err, out)
	}
	var info struct {
		Format      string `json:"format"`
		VirtualSize int64  `json:"virtual-size"`
		ActualSize  int64  `json:"actual-size"`
	}
	must(t, json.Unmarshal(out, &info))
	if info.Format != "raw" || info.VirtualSize != 1<<30 {
		t.Errorf("qemu-img info: %+v", info)
	}
	if info.ActualSize > 120<<20 {
		t.Errorf("raw disk uses %d bytes on disk for a ~5 MiB tree: not sparse", info.ActualSize)
	}

	root := partition(t, raw, RootIndex)
	if out, err := exec.Command(e2fsck, "-fn", root).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn root partition: %v\n%s", err, out)
	}
	esp := partition(t, raw, ESPIndex)
	if out, err := exec.Command(fsckVfat, "-n", esp).CombinedOutput(); err != nil {
		t.Errorf("fsck.vfat -n ESP: %v\n%s", err, out)
	}

	// What e2fsprogs reads back: modes, symlinks, content, timestamps.
	stat := func(p string) string {
		out, err := exec.Command(debugfs, "-R", "stat "+p, root).CombinedOutput()
		if err != nil {
			t.Fatalf("debugfs stat %s: %v\n%s", p, err, out)
		}
		return string(out)
	}
	for p, want := range map[string][]string{
		"/usr/bin/tool":      {"Mode:  04755", "Type: regular"},
		"/tmp":               {"Mode:  01777", "Type: directory"},
		"/usr/bin":           {"Mode:  0755", "Type: directory", "User:     0   Group:     0"},
		"/usr/big":           {"Mode:  0600", "Size: 4800000"},
		"/usr/bin/link":      {"Type: symlink", `Fast link dest: "tool"`},
		"/usr/bin/longlink":  {"Type: symlink"},
		"/etc/hostname":      {"mtime: 0x5e0d5da5", "ctime: 0x5e0d5da5", "Links: 2"},
		"/etc/hostname.orig": {"Links: 2", "Size: 8"},
		"/run/initctl":       {"Type: FIFO", "Mode:  0600"},
		"/etc/empty":         {"Size: 0"},
	} {
		s := stat(p)
		for _, w := range want {
			if !strings.Contains(s, w) {
				t.Errorf("debugfs stat %s: want %q in\n%s", p, w, s)
			}
		}
	}
	cat, err := exec.Command(debugfs, "-R", "cat /opt/outpost/marker", root).Output()
	if err != nil || string(cat) != "MARKER-42\n" {
		t.Errorf("marker = %q, %v", cat, err)
	}

	// The ESP as appliance/boot.go lays it out: loader.conf picks the
	// first outpost-* entry; slot a's entry points at its kernel and initrd
	// and at the root partition by PARTUUID.
	d, err := diskfs.Open(raw, diskfs.WithOpenMode(diskfs.ReadOnly))
	must(t, err)
	defer d.Close()
	efs, err := d.GetFilesystem(ESPIndex)
	must(t, err)
	loader, err := efs.ReadFile("/loader/loader.conf")
	must(t, err)
	if want := "default outpost-*\ntimeout 0\neditor no\nconsole-mode keep\n"; string(loader) != want {
		t.Errorf("loader.conf:\n%s\nwant\n%s", loader, want)
	}
	conf, err := efs.ReadFile("/loader/entries/" + appliance.EntryFile(1, appliance.SlotA, -1))
	must(t, err)
	tbl := d.Table.(*gpt.Table)
	want := "title test-appliance 1.2.3\nversion 1.2.3\nlinux /outpost/a/vmlinuz\ninitrd /outpost/a/initrd.img\n" +
		"options root=PARTUUID=" + strings.ToLower(tbl.Partitions[1].GUID) + " rw console=tty0 console=ttyS0,115200\n"
	if string(conf) != want {
		t.Errorf("%s:\n%s\nwant\n%s", appliance.EntryFile(1, appliance.SlotA, -1), conf, want)
	}
	if e, ok := appliance.ParseEntryFile(appliance.EntryFile(1, appliance.SlotA, -1)); !ok || e.Counting {
		t.Errorf("the built-in entry's name parses as %+v, %v", e, ok)
	}
	for p, want := range map[string]string{appliance.SlotKernel("a"): "new kernel", appliance.SlotInitrd("a"): "initrd"} {
		if got, err := efs.ReadFile(p); err != nil || string(got) != want {
			t.Errorf("%s on the ESP = %q, %v; want %q", p, got, err, want)
		}
	}
	if _, err := efs.ReadFile("/EFI/BOOT/BOOTX64.EFI"); err != nil {
		t.Errorf("BOOTX64.EFI: %v", err)
	}
	if got := stat(appliance.ESPMount); !strings.Contains(got, "Type: directory") {
		t.Errorf("%s in the root: %s", appliance.ESPMount, got)
	}
}

// TestBuildReproducible builds the same tree twice, a second apart (go-diskfs
// stamps time.Now into the FAT ESP), and compares bytes; a third build with another epoch
// must differ, or the comparison proves nothing.
func TestBuildReproducible(t *testing.T) {
	testtool.Need(t, "e2fsck")
	dir := t.TempDir()
	writeTree(t, dir)
	a := filepath.Join(t.TempDir(), "a.raw")
	b := filepath.Join(t.TempDir(), "b.raw")
	build(t, dir, a)
	time.Sleep(1100 * time.Millisecond) // go-diskfs stamps time.Now: make it differ
	build(t, dir, b)
	if ha, hb := hashFile(t, a), hashFile(t, b); ha != hb {
		t.Errorf("two builds differ:\n%s", firstDiffs(t, a, b))
	}
	c := filepath.Join(t.TempDir(), "c.raw")
	if _, err := Build(context.Background(), testSpec(t), dir, c, Options{Epoch: testEpoch.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if hashFile(t, a) == hashFile(t, c) {
		t.Error("builds with different SOURCE_DATE_EPOCH are identical: the comparison cannot see differences")
	}
}

// hashFile hashes a sparse file's content quickly: it reads only the data
// regions (SEEK_DATA/SEEK_HOLE) and hashes each non-zero 64 KiB block with
// its offset, so equal hashes mean equal bytes whatever the hole layout.
func hashFile(t *testing.T, p string) [32]byte {
	t.Helper()
	h := sha256.New()
	must(t, eachDataBlock(p, func(off int64, b []byte) error {
		fmt.Fprintf(h, "%d:", off)
		h.Write(b)
		return nil
	}))
	fi, err := os.Stat(p)
	must(t, err)
	fmt.Fprintf(h, "size:%d", fi.Size())
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

// eachDataBlock calls fn for every 64 KiB block of p that holds a non-zero
// byte, skipping holes without reading them.
func eachDataBlock(p string, fn func(off int64, b []byte) error) error {
	return eachDataBlockIn(p, 0, -1, fn)
}

func eachDataBlockIn(p string, start, length int64, fn func(off int64, b []byte) error) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	end := fi.Size()
	if length >= 0 {
		end = start + length
	}
	buf := make([]byte, 64<<10)
	zero := make([]byte, len(buf))
	for off := start; off < end; {
		data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if err != nil || data >= end {
			return nil // ENXIO: only a hole remains
		}
		hole, err := unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		hole = min(hole, end)
		for o := data; o < hole; {
			n := min(int64(len(buf)), hole-o)
			if _, err := f.ReadAt(buf[:n], o); err != nil {
				return err
			}
			if !bytes.Equal(buf[:n], zero[:n]) {
				if err := fn(o, buf[:n]); err != nil {
					return err
				}
			}
			o += n
		}
		off = hole
	}
	return nil
}

func firstDiffs(t *testing.T, a, b string) string {
	out, _ := exec.Command("cmp", "-l", a, b).Output()
	lines := strings.Split(string(out), "\n")
	if len(lines) > 40 {
		lines = lines[:40]
	}
	return strings.Join(lines, "\n")
}

func TestBuildTar(t *testing.T) {
	e2fsck := testtool.Path(t, "e2fsck")
	dir := t.TempDir()
	writeTree(t, dir)
	tarPath := filepath.Join(t.TempDir(), "rootfs.tar")
	f, err := os.Create(tarPath)
	must(t, err)
	tw := tar.NewWriter(f)
	// Members out of order, a missing parent, a hard link and a device node.
	add := func(h *tar.Header, body string) {
		h.Size = int64(len(body))
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		must(t, tw.WriteHeader(h))
		if h.Typeflag == tar.TypeReg {
			_, err := tw.Write([]byte(body))
			must(t, err)
		}
	}
	add(&tar.Header{Name: "./boot/vmlinuz-6.1.0-1-cloud-amd64", Typeflag: tar.TypeReg, Mode: 0o644}, "kernel")
	add(&tar.Header{Name: "./etc/shadow", Typeflag: tar.TypeReg, Mode: 0o640, Gid: 42}, "secret")
	add(&tar.Header{Name: "./etc/shadow-", Typeflag: tar.TypeLink, Linkname: "./etc/shadow"}, "")
	add(&tar.Header{Name: "./dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}, "")
	add(&tar.Header{Name: "./etc/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	must(t, tw.Close())
	must(t, f.Close())
	raw := filepath.Join(t.TempDir(), "disk.raw")
	res := build(t, tarPath, raw)
	if len(res.Skipped) != 0 {
		t.Errorf("Skipped = %q, want nothing: hard links and device nodes are stored", res.Skipped)
	}
	root := partition(t, raw, RootIndex)
	if out, err := exec.Command(e2fsck, "-fn", root).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn: %v\n%s", err, out)
	}
	out, err := exec.Command("debugfs", "-R", "cat /etc/shadow-", root).Output()
	if err != nil || string(out) != "secret" {
		t.Errorf("hard link = %q, %v", out, err)
	}
	ls, _ := exec.Command("debugfs", "-R", "ls -l /etc", root).CombinedOutput()
	if strings.Count(string(ls), "100640 (1)      0     42       6") != 2 {
		t.Errorf("/etc/shadow and /etc/shadow- should be one inode, mode 0640, group 42:\n%s", ls)
	}
	st, _ := exec.Command("debugfs", "-R", "stat /etc/shadow-", root).CombinedOutput()
	if !strings.Contains(string(st), "Links: 2") {
		t.Errorf("hard link count:\n%s", st)
	}
	st, _ = exec.Command("debugfs", "-R", "stat /dev/null", root).CombinedOutput()
	if !strings.Contains(string(st), "Type: character special") || !strings.Contains(string(st), "Device major/minor number: 01:03") {
		t.Errorf("/dev/null:\n%s", st)
	}
}

func TestBuildRefuses(t *testing.T) {
	noKernel := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(noKernel, "etc"), 0o755))
	tooBig := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(tooBig, "boot"), 0o755))
	must(t, os.WriteFile(filepath.Join(tooBig, "boot/vmlinuz-1"), []byte("k"), 0o644))
	big, err := os.Create(filepath.Join(tooBig, "huge"))
	must(t, err)
	must(t, big.Truncate(2<<30)) // sparse in the source, 2 GiB in the image
	must(t, big.Close())
	for _, tt := range []struct {
		name, rootfs string
		is           error
		msg          string
	}{
		{"no kernel", noKernel, ErrNoKernel, "has no boot/vmlinuz-*; install a kernel package"},
		{"too large", tooBig, ErrTooLarge, "raise hardware.disk.size"},
		{"missing", filepath.Join(noKernel, "nope"), nil, "no such file or directory; give a directory or a tar archive"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "disk.raw")
			_, err := Build(context.Background(), testSpec(t), tt.rootfs, out, Options{})
			if err == nil || !strings.Contains(err.Error(), tt.msg) || (tt.is != nil && !errors.Is(err, tt.is)) {
				t.Fatalf("Build error = %v, want %q", err, tt.msg)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("output left behind: %v", err)
			}
		})
	}
}

// TestBuildWritesApplianceMarker: every root filesystem the builder writes
// carries appliance.MarkerFile (first boot refuses to run on a host without
// it), whether the tree has /etc, lacks it, or holds a stale marker.
func TestBuildWritesApplianceMarker(t *testing.T) {
	e2fsck := testtool.Path(t, "e2fsck")
	debugfs := testtool.Path(t, "debugfs")
	withEtc := t.TempDir()
	writeTree(t, withEtc)
	stale := t.TempDir()
	writeTree(t, stale)
	must(t, os.MkdirAll(filepath.Join(stale, "etc/outpost"), 0o700))
	must(t, os.WriteFile(filepath.Join(stale, "etc/outpost/appliance"), []byte("NAME=old\n"), 0o600))
	noEtc := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(noEtc, "boot"), 0o755))
	must(t, os.WriteFile(filepath.Join(noEtc, "boot/vmlinuz-1"), []byte("k"), 0o644))
	badEtc := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(badEtc, "boot"), 0o755))
	must(t, os.WriteFile(filepath.Join(badEtc, "boot/vmlinuz-1"), []byte("k"), 0o644))
	must(t, os.WriteFile(filepath.Join(badEtc, "etc"), []byte("not a dir"), 0o644))

	want := string(appliance.Marker("test-appliance", "1.2.3"))
	for name, dir := range map[string]string{"with etc": withEtc, "stale marker": stale, "no etc": noEtc} {
		t.Run(name, func(t *testing.T) {
			raw := filepath.Join(t.TempDir(), "disk.raw")
			build(t, dir, raw)
			root := partition(t, raw, RootIndex)
			if out, err := exec.Command(e2fsck, "-fn", root).CombinedOutput(); err != nil {
				t.Errorf("e2fsck -fn: %v\n%s", err, out)
			}
			got, err := exec.Command(debugfs, "-R", "cat "+appliance.MarkerFile, root).Output()
			if err != nil || string(got) != want {
				t.Errorf("%s = %q, %v; want %q", appliance.MarkerFile, got, err, want)
			}
			st, _ := exec.Command(debugfs, "-R", "stat "+appliance.MarkerFile, root).CombinedOutput()
			if !strings.Contains(string(st), "Mode:  0644") || !strings.Contains(string(st), "User:     0   Group:     0") {
				t.Errorf("marker mode or owner:\n%s", st)
			}
		})
	}
	_, err := Build(context.Background(), testSpec(t), badEtc, filepath.Join(t.TempDir(), "disk.raw"), Options{Epoch: testEpoch})
	if err == nil || !strings.Contains(err.Error(), "/etc is not a directory") {
		t.Errorf("a tree whose /etc is a file: %v", err)
	}
}
