package artifact

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmware/govmomi/ovf"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/builder"
	"github.com/outpost-appliance/outpost/disk/disktest"
)

// testJob is a job for a small raw disk with text, random data and holes,
// and an unaligned tail.
func testJob(t *testing.T) *Job {
	t.Helper()
	spec, _, err := builder.ParseSpec("image.yaml", []byte("name: lab\nversion: '2'\nhardware: {disk: {size: 1GiB}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	raw := disktest.MakeRaw(t, disktest.Spec{Name: "lab", Size: 6<<20 + 512, Seed: 7, Regions: []disktest.Region{
		{Off: 0, Len: 200 << 10, Kind: disktest.Text}, {Off: 3 << 20, Len: 1 << 20, Kind: disktest.Random},
		{Off: 5 << 20, Len: 64 << 10, Kind: disktest.Zeros}, {Off: 6 << 20, Len: 512, Kind: disktest.Text},
	}})
	return &Job{Spec: spec, MAC: appliance.DeriveMAC("lab"), RawPath: raw, Epoch: time.Unix(1700000000, 0)}
}

func format(t *testing.T, name string) Format {
	t.Helper()
	for _, f := range Formats() {
		if f.Name == name {
			return f
		}
	}
	t.Fatalf("no format %q", name)
	return Format{}
}

// write writes the formats in order into dir, closes the job, and returns
// the outputs' paths by format name.
func write(t *testing.T, job *Job, dir string, names ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, name := range names {
		f := format(t, name)
		p := filepath.Join(dir, "lab-2"+f.Ext)
		if err := f.Write(context.Background(), job, p); err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
		out[name] = p
	}
	if err := job.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	var want []string
	for _, p := range out {
		want = append(want, filepath.Base(p))
	}
	slices.Sort(want)
	if got := listDir(t, dir); !slices.Equal(got, want) {
		t.Errorf("directory holds %q, want only the outputs %q", got, want)
	}
	return out
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
	slices.Sort(names)
	return names
}

// Every format, written alone from the raw disk, holds that disk: qemu-img
// (and for VMDK vmdkinfo and libvmdk) read it back; the OVA is read as an
// importer does and its disk member proven the same way.
func TestFormats(t *testing.T) {
	for _, name := range []string{"raw", "qcow2", "vmdk", "ova"} {
		t.Run(name, func(t *testing.T) {
			job := testJob(t)
			out := write(t, job, t.TempDir(), name)[name]
			if name != "ova" {
				disktest.Verify(t, name, out, job.RawPath)
				return
			}
			vmdkPath := readOVA(t, out, job)
			disktest.Verify(t, "vmdk", vmdkPath, job.RawPath)
		})
	}
}

// readOVA checks an OVA as an importer reads it: the members in order, the
// manifest's digests, a descriptor govmomi parses naming the disk, the
// spec's hardware and the MAC. It returns the extracted disk member.
func readOVA(t *testing.T, path string, job *Job) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	members := map[string][]byte{}
	var names []string
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(job.Epoch) {
			t.Errorf("member %s: time %v, want SOURCE_DATE_EPOCH %v", h.Name, h.ModTime, job.Epoch)
		}
		names, members[h.Name] = append(names, h.Name), b
	}
	if want := []string{"lab.ovf", "lab.mf", job.DiskName()}; !slices.Equal(names, want) {
		t.Fatalf("OVA members %q, want %q", names, want)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(members["lab.mf"])), "\n") {
		var name, sum string
		if _, err := fmt.Sscanf(strings.Replace(line, ")= ", " ", 1), "SHA256(%s %s", &name, &sum); err != nil {
			t.Fatalf("manifest line %q: %v", line, err)
		}
		got := sha256.Sum256(members[name])
		if hex.EncodeToString(got[:]) != sum {
			t.Errorf("manifest: %s has SHA256 %x, the manifest says %s", name, got, sum)
		}
	}
	env, err := ovf.Unmarshal(bytes.NewReader(members["lab.ovf"]))
	if err != nil {
		t.Fatalf("govmomi cannot parse the descriptor: %v", err)
	}
	if env.References == nil || len(env.References) != 1 || env.References[0].Href != job.DiskName() {
		t.Errorf("descriptor references %+v, want the one disk %s", env.References, job.DiskName())
	}
	desc := string(members["lab.ovf"])
	for _, want := range []string{job.MAC.String(), "vmx-14", ">4096<", ">2<"} {
		if !strings.Contains(desc, want) {
			t.Errorf("descriptor lacks %q", want)
		}
	}
	p := filepath.Join(t.TempDir(), job.DiskName())
	if err := os.WriteFile(p, members[job.DiskName()], 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// With both the OVA and the standalone VMDK asked for, the disk is
// compressed once, whichever comes first; the OVA carries the same bytes
// as the VMDK beside it, and the job leaves no scratch file behind.
func TestVMDKCompressedOnce(t *testing.T) {
	for _, order := range [][]string{{"ova", "vmdk"}, {"vmdk", "ova"}, {"qcow2", "ova", "raw", "vmdk"}} {
		t.Run(strings.Join(order, ","), func(t *testing.T) {
			job := testJob(t)
			out := write(t, job, t.TempDir(), order...)
			if job.compressions != 1 {
				t.Errorf("the disk was compressed %d times, want once", job.compressions)
			}
			member := readOVA(t, out["ova"], job)
			a, err := os.ReadFile(member)
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(out["vmdk"])
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a, b) {
				t.Errorf("the OVA's disk member (%d bytes) differs from the standalone VMDK (%d bytes)", len(a), len(b))
			}
			disktest.Verify(t, "vmdk", out["vmdk"], job.RawPath)
		})
	}
}

// The raw output hard-links a scratch disk of this run, and copies (sparse)
// a disk that is the user's.
func TestRawLinksOnlyScratch(t *testing.T) {
	for _, scratch := range []bool{true, false} {
		job := testJob(t)
		job.Scratch = scratch
		out := write(t, job, t.TempDir(), "raw")["raw"]
		var st syscall.Stat_t
		if err := syscall.Stat(out, &st); err != nil {
			t.Fatal(err)
		}
		if want := map[bool]uint64{true: 2, false: 1}[scratch]; uint64(st.Nlink) != want {
			t.Errorf("Scratch %v: raw output has %d links, want %d", scratch, st.Nlink, want)
		}
		if !scratch {
			disktest.Verify(t, "raw", out, job.RawPath)
		}
	}
}
