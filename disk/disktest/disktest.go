// Package disktest makes test disks and proves disk writers with tools
// nobody here wrote (qemu-img, vmdkinfo, libvmdk), the way
// go-containerregistry's validate package proves any v1.Image.
//
// It is for tests only: it calls t.Fatal and runs external programs.
package disktest

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-appliance/outpost/disk"
	"github.com/outpost-appliance/outpost/internal/testtool"
)

// Kind is what a data region of a test disk holds.
type Kind int

const (
	// Random bytes: incompressible.
	Random Kind = iota
	// Text: words from a small vocabulary, compresses about 3:1 like
	// binaries and logs on a real root filesystem.
	Text
	// Zeros written explicitly: allocated in the file, zero in content,
	// the case where extents say "data" and writers must still skip.
	Zeros
)

// Region is a written part of a test disk; everything else is a hole.
type Region struct {
	Off, Len int64
	Kind     Kind
}

// Spec describes a test disk: its size and written regions, filled from Seed.
type Spec struct {
	Name    string
	Size    int64
	Seed    uint64
	Regions []Region
}

const (
	kib = 1 << 10
	mib = 1 << 20
	gib = 1 << 30
)

// Disks is the set every writer is proven against.
func Disks() []Spec {
	return []Spec{
		{Name: "empty", Size: 4 * mib},
		{Name: "zeros-only", Size: 8 * mib, Regions: []Region{{0, 2 * mib, Zeros}, {5 * mib, 100 * kib, Zeros}}},
		{Name: "unaligned-tail", Size: 3*mib + 12345, Seed: 2, Regions: []Region{
			{100, 5000, Random}, {mib - 10, 20, Text}, {3*mib + 1000, 11345, Random},
		}},
		{Name: "edges", Size: 40 * mib, Seed: 3, Regions: []Region{
			{0, 70 * kib, Text}, {40*mib - 70*kib, 70 * kib, Random},
		}},
		{Name: "holes-at-ends", Size: 40*mib + 512, Seed: 4, Regions: []Region{
			{8 * mib, 3 * mib, Text}, {33*mib + 7, 300 * kib, Random}, {34 * mib, mib, Zeros},
		}},
		RandomSpec("random", 5, 64*mib, 12),
		{Name: "sparse-1g", Size: gib, Seed: 6, Regions: []Region{
			{0, mib, Text}, {300 * mib, 2 * mib, Random}, {gib - 512*kib, 512 * kib, Text},
		}},
	}
}

// RandomSpec is a disk of size bytes with n regions of random kind, offset and
// length (up to 4 MiB each, possibly overlapping), from seed.
func RandomSpec(name string, seed uint64, size int64, n int) Spec {
	r := rand.New(rand.NewPCG(seed, 0))
	s := Spec{Name: name, Size: size, Seed: seed}
	for range n {
		l := 1 + r.Int64N(min(4*mib, size))
		off := r.Int64N(size - l + 1)
		s.Regions = append(s.Regions, Region{off, l, Kind(r.IntN(3))})
	}
	return s
}

var words = strings.Fields(`the of and to in is was for on that with as by at from this be
	which or are an have not it has but were had their its also one all they been more two
	/usr/lib/x86_64-linux-gnu libc.so.6 GLIBC_2.34 __stack_chk_fail malloc free memcpy
	0x00000000 0xffffffff systemd journal connector outpost enroll 443 ESXi qcow2`)

// Fill writes the spec's regions into f (which should be empty) and sets its
// size; unwritten ranges stay holes.
func (s Spec) Fill(f *os.File) error {
	if err := f.Truncate(s.Size); err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(s.Seed, 1))
	for _, g := range s.Regions {
		b := make([]byte, g.Len)
		switch g.Kind {
		case Random:
			i := 0
			for ; i+8 <= len(b); i += 8 {
				binary.LittleEndian.PutUint64(b[i:], r.Uint64())
			}
			for ; i < len(b); i++ {
				b[i] = byte(r.Uint32())
			}
		case Text:
			for i := 0; i < len(b); {
				w := words[r.IntN(len(words))]
				i += copy(b[i:], w)
				if i < len(b) {
					b[i] = " \n"[r.IntN(2)]
					i++
				}
			}
		}
		if _, err := f.WriteAt(b, g.Off); err != nil {
			return err
		}
	}
	return nil
}

// MakeRaw writes the spec as a sparse raw file in a temporary directory
// and returns its path.
func MakeRaw(t testing.TB, s Spec) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), s.Name+".raw")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Fill(f); err != nil {
		t.Fatalf("make test disk %s: %v", s.Name, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

func run(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(testtool.Path(t, name), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return out
}

// Verify proves that path, an image in format ("raw", "qcow2" or "vmdk"),
// holds exactly the contents of the raw disk rawPath with the virtual size
// rounded up to 64 KiB: qemu-img check (for formats that have metadata),
// qemu-img compare and qemu-img info; for VMDK also vmdkinfo and a full read
// through libvmdk (python3-libvmdk), a second, independent reader.
func Verify(t testing.TB, format, path, rawPath string) {
	t.Helper()
	fi, err := os.Stat(rawPath)
	if err != nil {
		t.Fatal(err)
	}
	want := (fi.Size() + disk.GrainSize - 1) / disk.GrainSize * disk.GrainSize
	if format != "raw" {
		run(t, "qemu-img", "check", "-q", "-f", format, path)
	}
	// A difference is an error, not fatal: the other readers still run.
	if out, err := exec.Command(testtool.Path(t, "qemu-img"), "compare", "-f", "raw", "-F", format, rawPath, path).CombinedOutput(); err != nil {
		t.Errorf("qemu-img compare %s %s: %v\n%s", rawPath, path, err, out)
	}
	var info struct {
		VirtualSize int64  `json:"virtual-size"`
		Format      string `json:"format"`
	}
	if err := json.Unmarshal(run(t, "qemu-img", "info", "--output=json", "-f", format, path), &info); err != nil {
		t.Fatalf("qemu-img info %s: %v", path, err)
	}
	if info.VirtualSize != want || info.Format != format {
		t.Errorf("qemu-img info %s: virtual size %d, format %s; want %d, %s", path, info.VirtualSize, info.Format, want, format)
	}
	if format != "vmdk" {
		return
	}
	out := string(run(t, "vmdkinfo", path))
	for _, w := range []string{"Disk type:\t\t\tStream optimized", fmt.Sprintf("(%d bytes)", want)} {
		if !strings.Contains(out, w) {
			t.Errorf("vmdkinfo %s: output lacks %q:\n%s", path, w, out)
		}
	}
	py := "/usr/bin/python3"
	if exec.Command(py, "-c", "import pyvmdk").Run() != nil {
		testtool.Unchecked(t, "python3-libvmdk missing (the libvmdk read of "+path+"); install Debian package python3-libvmdk (scripts/setup.sh)")
		return
	}
	res, err := exec.Command(py, "-c", libvmdkCompare, path, rawPath).CombinedOutput()
	if got := strings.TrimSpace(string(res)); err != nil || got != fmt.Sprintf("same %d", want) {
		t.Errorf("libvmdk reads %s differently from %s: %s (%v)", path, rawPath, lastLine(got), err)
	}
}

func lastLine(s string) string { return s[strings.LastIndexByte(s, '\n')+1:] }

// libvmdkCompare reads a VMDK through libvmdk and compares it with a raw
// file (zero-padded to the VMDK's size).
const libvmdkCompare = `
import sys, pyvmdk
# The extent name inside need not match the file name: hand the file over.
h = pyvmdk.handle(); h.open_file_object(open(sys.argv[1], "rb"))
h.open_extent_data_files_as_file_objects([open(sys.argv[1], "rb")])
raw = open(sys.argv[2], "rb")
size = h.get_media_size(); off = 0; step = 1 << 20
while off < size:
    n = min(step, size - off)
    b = h.read_buffer_at_offset(n, off)
    r = raw.read(n); r += bytes(n - len(r))
    if b != r:
        i = next(i for i in range(n) if i >= len(b) or b[i] != r[i])
        raise SystemExit("differ at byte %d" % (off + i))
    off += n
if raw.read(1): raise SystemExit("raw disk longer than media size %d" % size)
print("same", size)
`

// Prove proves a format writer, through the one shape every writer has
// (disk.WriteFunc), on every disk of Disks: it writes the disk to a file,
// checks the Info the writer reports (the file's size, the capacity, the
// non-zero grains) and the output with Verify, then writes the disk again
// through a plain io.Writer (no seeking, no truncating: a pipe or a tar
// member) and checks that gives the same bytes.
func Prove[O any](t *testing.T, format string, write disk.WriteFunc[O], opt O) {
	for _, s := range Disks() {
		t.Run(s.Name, func(t *testing.T) {
			raw := MakeRaw(t, s)
			img, err := disk.OpenRaw(raw)
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			dir := t.TempDir()
			a, b := filepath.Join(dir, "a."+format), filepath.Join(dir, "b."+format)
			info, err := writeTo(a, func(f *os.File) (disk.Info, error) { return write(f, img, opt) })
			if err != nil {
				t.Fatalf("write %s: %v", format, err)
			}
			checkInfo(t, info, a, img)
			Verify(t, format, a, raw)
			if _, err := writeTo(b, func(f *os.File) (disk.Info, error) { return write(struct{ io.Writer }{f}, img, opt) }); err != nil {
				t.Fatalf("write %s again, to a plain io.Writer: %v", format, err)
			}
			if !sameFiles(t, a, b) {
				t.Errorf("same disk written twice gives different %s files", format)
			}
		})
	}
}

func writeTo(path string, write func(*os.File) (disk.Info, error)) (disk.Info, error) {
	f, err := os.Create(path)
	if err != nil {
		return disk.Info{}, err
	}
	info, err := write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return info, err
}

// checkInfo compares what a writer reported with the file it wrote and the
// disk it read.
func checkInfo(t testing.TB, info disk.Info, path string, img disk.Image) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Written != fi.Size() {
		t.Errorf("Info.Written %d, the file has %d bytes", info.Written, fi.Size())
	}
	capacity := (img.Size() + disk.GrainSize - 1) / disk.GrainSize * disk.GrainSize
	if info.Capacity != capacity {
		t.Errorf("Info.Capacity %d, want %d", info.Capacity, capacity)
	}
	exts, err := img.Extents()
	if err != nil {
		t.Fatal(err)
	}
	var populated int64
	buf := make([]byte, disk.GrainSize)
	for _, r := range disk.Grains(exts, capacity) {
		for off := r.Off; off < r.End(); off += disk.GrainSize {
			if err := disk.ReadGrain(img, buf, off); err != nil {
				t.Fatal(err)
			}
			if !disk.IsZero(buf) {
				populated += disk.GrainSize
			}
		}
	}
	if info.Populated != populated {
		t.Errorf("Info.Populated %d, the disk has %d bytes in non-zero grains", info.Populated, populated)
	}
}

// sameFiles compares two files, reading only where either holds data.
func sameFiles(t testing.TB, a, b string) bool {
	fa, err := disk.OpenRaw(a)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := disk.OpenRaw(b)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	if fa.Size() != fb.Size() {
		return false
	}
	ea, err := fa.Extents()
	if err != nil {
		t.Fatal(err)
	}
	eb, err := fb.Extents()
	if err != nil {
		t.Fatal(err)
	}
	ba, bb := make([]byte, disk.GrainSize), make([]byte, disk.GrainSize)
	for _, r := range disk.Grains(append(ea, eb...), (fa.Size()+disk.GrainSize-1)/disk.GrainSize*disk.GrainSize) {
		for off := r.Off; off < r.End(); off += disk.GrainSize {
			if err := disk.ReadGrain(fa, ba, off); err != nil {
				t.Fatal(err)
			}
			if err := disk.ReadGrain(fb, bb, off); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ba, bb) {
				return false
			}
		}
	}
	return true
}
