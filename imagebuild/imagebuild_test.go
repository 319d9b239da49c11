package imagebuild

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/artifact"
	"github.com/outpost-appliance/outpost/builder"
	"github.com/outpost-appliance/outpost/disk/disktest"
	"github.com/outpost-appliance/outpost/internal/testtool"
)

func spec(t *testing.T, body string) *builder.Spec {
	t.Helper()
	s, _, err := builder.ParseSpec("image.yaml", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const smallSpec = "name: lab\nversion: '2'\nhardware: {disk: {size: 1GiB}}\n"

func formats(t *testing.T, names ...string) []artifact.Format {
	t.Helper()
	var out []artifact.Format
	for _, n := range names {
		f, ok := artifact.Lookup(n)
		if !ok {
			t.Fatalf("no format %q", n)
		}
		out = append(out, f)
	}
	return out
}

// rawDisk is a small raw GPT disk to pack.
func rawDisk(t *testing.T) string {
	t.Helper()
	p := disktest.MakeRaw(t, disktest.Spec{Name: "d", Size: 4 << 20, Seed: 3, Regions: []disktest.Region{
		{Off: 0, Len: 100 << 10, Kind: disktest.Text}, {Off: 2 << 20, Len: 300 << 10, Kind: disktest.Random},
	}})
	writeGPT(t, p)
	return p
}

// writeGPT writes a protective MBR and a GPT with one partition to the disk
// at p.
func writeGPT(t *testing.T, p string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	tbl := &gpt.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true, Partitions: []*gpt.Partition{
		{Index: 1, Start: 2048, End: uint64(fi.Size()/512) - 34, Type: gpt.LinuxFilesystem, Name: "data"},
	}}
	if err := tbl.Write(f, fi.Size()); err != nil {
		t.Fatal(err)
	}
}

// TestCheckRawDisk: other disk formats are recognised by their magic and
// named with the conversion command; data without a protective MBR and a
// valid GPT header is refused; a GPT disk passes.
func TestCheckRawDisk(t *testing.T) {
	qemuImg := testtool.Path(t, "qemu-img")
	dir := t.TempDir()
	made := func(name, format string) string {
		p := filepath.Join(dir, name)
		if out, err := exec.Command(qemuImg, "create", "-q", "-f", format, p, "4M").CombinedOutput(); err != nil {
			t.Fatalf("qemu-img create %s: %v\n%s", format, err, out)
		}
		return p
	}
	random := filepath.Join(dir, "random.img")
	data := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{1}).Read(data)
	os.WriteFile(random, data, 0o644)
	mbrOnly := filepath.Join(dir, "mbr.img")
	mbr := make([]byte, 1<<20)
	mbr[510], mbr[511], mbr[446+4] = 0x55, 0xAA, 0x83
	os.WriteFile(mbrOnly, mbr, 0o644)
	damaged := rawDisk(t)
	f, _ := os.OpenFile(damaged, os.O_RDWR, 0)
	f.WriteAt([]byte{0xFF}, 512+40) // inside the header, under its CRC
	f.Close()
	odd := filepath.Join(dir, "odd.img")
	os.WriteFile(odd, make([]byte, 1000), 0o644)

	for _, c := range []struct {
		path, want string
	}{
		{made("d.qcow2", "qcow2"), "it is a qcow2 image; convert it first: qemu-img convert -O raw "},
		{made("d.vmdk", "vmdk"), "it is a VMDK (sparse extent) image; convert it first: qemu-img convert -O raw "},
		{made("d.vhd", "vpc"), "it is a VHD image; convert it first"},
		{made("d.vhdx", "vhdx"), "it is a VHDX image; convert it first"},
		{random, "it has no partition table"},
		{mbrOnly, "no protective entry for a GPT"},
		{damaged, "GPT header is damaged (CRC mismatch)"},
		{odd, "not a non-zero multiple of 512"},
	} {
		err := CheckRawDisk(c.path)
		if !errors.Is(err, ErrNotRawDisk) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want %q", filepath.Base(c.path), err, c.want)
		}
	}
	if err := CheckRawDisk(rawDisk(t)); err != nil {
		t.Errorf("a GPT disk: %v", err)
	}
	// Pack refuses before writing anything.
	out := t.TempDir()
	if _, err := Pack(context.Background(), Request{Spec: spec(t, smallSpec), Formats: formats(t, "raw"), OutDir: out}, filepath.Join(dir, "d.qcow2")); !errors.Is(err, ErrNotRawDisk) {
		t.Errorf("Pack of a qcow2: %v", err)
	}
	if left := listDir(t, out); len(left) != 0 {
		t.Errorf("left %q", left)
	}
}

// TestOVATimesWithoutSourceDateEpoch: without SOURCE_DATE_EPOCH the OVA's
// members are dated like the input — the raw disk's time for Pack — not 1970.
func TestOVATimesWithoutSourceDateEpoch(t *testing.T) {
	disk := rawDisk(t)
	when := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	os.Chtimes(disk, when, when)
	out := t.TempDir()
	res, err := Pack(context.Background(), Request{Spec: spec(t, smallSpec), Formats: formats(t, "ova", "ova"), OutDir: out}, disk)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Outputs) != 1 {
		t.Errorf("ova,ova: outputs %q, want one", res.Outputs)
	}
	f, err := os.Open(res.Outputs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(when) {
			t.Errorf("%s dated %v, want %v", h.Name, h.ModTime, when)
		}
	}
}

// TestConversionProgress: converting to VMDK and qcow2 reports percent
// lines through Request.Progress.
func TestConversionProgress(t *testing.T) {
	var prog bytes.Buffer
	_, err := Pack(context.Background(), Request{Spec: spec(t, smallSpec), Formats: formats(t, "qcow2", "vmdk"), OutDir: t.TempDir(), Progress: &prog, SourceDateEpoch: "1700000000"}, rawDisk(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"writing qcow2: 100%\n", "writing VMDK: 100%\n"} {
		if !strings.Contains(prog.String(), want) {
			t.Errorf("progress lacks %q:\n%s", want, prog.String())
		}
	}
	if n := strings.Count(prog.String(), "writing VMDK: "); n < 3 {
		t.Errorf("%d VMDK progress lines, want some before 100%%:\n%s", n, prog.String())
	}
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func mustMAC(t *testing.T, s string) appliance.MAC {
	t.Helper()
	m, err := appliance.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// The NIC's MAC is the one given (--mac), else the spec's nic.mac, else
// derived from the appliance name (the name after any rename).
func TestMACPrecedence(t *testing.T) {
	withMAC := smallSpec + "nic: {mac: '00:50:56:0a:0b:0c'}\n"
	tests := []struct {
		name   string
		spec   string
		rename string
		given  string
		want   appliance.MAC
	}{
		{"given beats spec", withMAC, "", "00:50:56:01:02:03", mustMAC(t, "00:50:56:01:02:03")},
		{"given beats derived", smallSpec, "", "00:50:56:01:02:03", mustMAC(t, "00:50:56:01:02:03")},
		{"spec beats derived", withMAC, "", "", mustMAC(t, "00:50:56:0a:0b:0c")},
		{"spec beats derived after rename", withMAC, "lab-b", "", mustMAC(t, "00:50:56:0a:0b:0c")},
		{"derived", smallSpec, "", "", appliance.DeriveMAC("lab")},
		{"derived from the new name", smallSpec, "lab-b", "", appliance.DeriveMAC("lab-b")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := Request{Spec: spec(t, tt.spec), Formats: formats(t, "raw"), OutDir: t.TempDir()}
			if tt.rename != "" {
				req.Spec.Name = tt.rename
			}
			if tt.given != "" {
				req.MAC = mustMAC(t, tt.given)
			}
			res, err := Pack(context.Background(), req, rawDisk(t))
			if err != nil {
				t.Fatal(err)
			}
			if res.MAC != tt.want {
				t.Errorf("MAC %s, want %s", res.MAC, tt.want)
			}
		})
	}
	if appliance.DeriveMAC("lab") == appliance.DeriveMAC("lab-b") {
		t.Fatal("derived MACs of two names are equal: the rename cases prove nothing")
	}
}

var errFormat = errors.New("format failed on purpose")

// A format that fails after others succeeded leaves nothing in the output
// directory: no output, no temporary name, no scratch VMDK.
func TestPublishAllOrNothing(t *testing.T) {
	failing := artifact.Format{Name: "failing", Ext: ".fail", Write: func(ctx context.Context, job *artifact.Job, dst string) error {
		if err := os.WriteFile(dst, []byte("half"), 0o644); err != nil {
			return err
		}
		return errFormat
	}}
	for _, order := range [][]string{{"raw", "qcow2", "ova"}, {"ova"}, {"vmdk", "ova"}} {
		t.Run(strings.Join(order, ","), func(t *testing.T) {
			out := t.TempDir()
			req := Request{Spec: spec(t, smallSpec), Formats: append(formats(t, order...), failing), OutDir: out}
			res, err := Pack(context.Background(), req, rawDisk(t))
			if !errors.Is(err, errFormat) || !strings.Contains(err.Error(), "writing failing: ") {
				t.Fatalf("got %v, want the format's error, naming it", err)
			}
			if res.Outputs != nil {
				t.Errorf("failed pack reports outputs %q", res.Outputs)
			}
			if left := listDir(t, out); len(left) != 0 {
				t.Errorf("failed pack left %q in the output directory", left)
			}
		})
	}

	// The same formats without the failing one are all published.
	out := t.TempDir()
	res, err := Pack(context.Background(), Request{Spec: spec(t, smallSpec), Formats: formats(t, "raw", "qcow2", "ova"), OutDir: out}, rawDisk(t))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(out, "lab-2.raw"), filepath.Join(out, "lab-2.qcow2"), filepath.Join(out, "lab-2.ova")}
	if !slices.Equal(res.Outputs, want) {
		t.Errorf("outputs %q, want %q", res.Outputs, want)
	}
	if got := listDir(t, out); !slices.Equal(got, []string{"lab-2.ova", "lab-2.qcow2", "lab-2.raw"}) {
		t.Errorf("output directory holds %q", got)
	}
}

// Refusals come before anything is written, and a failed build removes its
// temporary raw disk.
func TestBuildRefuses(t *testing.T) {
	noKernel := t.TempDir()
	tests := []struct {
		name, epoch, msg string
	}{
		{"bad epoch", "yesterday", `SOURCE_DATE_EPOCH="yesterday" is not a number of seconds since 1970`},
		{"negative epoch", "-1", `SOURCE_DATE_EPOCH="-1" is not a number`},
		{"no kernel", "1700000000", "has no boot/vmlinuz-*"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := t.TempDir()
			var log bytes.Buffer
			req := Request{Spec: spec(t, smallSpec), Formats: formats(t, "raw"), OutDir: out, SourceDateEpoch: tt.epoch, Log: &log}
			_, err := Build(context.Background(), req, noKernel)
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("got %v, want %q", err, tt.msg)
			}
			if left := listDir(t, out); len(left) != 0 {
				t.Errorf("left behind: %q", left)
			}
		})
	}

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Build(context.Background(), Request{Spec: spec(t, smallSpec), OutDir: filepath.Join(file, "out")}, noKernel)
	if err == nil || !strings.HasPrefix(err.Error(), "output directory") {
		t.Errorf("output directory under a file: got %v", err)
	}
}

func TestSourceDateEpoch(t *testing.T) {
	if got, err := SourceDateEpoch(""); err != nil || !got.IsZero() {
		t.Errorf(`SourceDateEpoch("") = %v, %v; want the zero time`, got, err)
	}
	got, err := SourceDateEpoch("1700000000")
	if err != nil || got.Unix() != 1700000000 || got.Location().String() != "UTC" {
		t.Errorf("SourceDateEpoch(1700000000) = %v, %v", got, err)
	}
}
