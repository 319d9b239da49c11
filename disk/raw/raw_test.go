package raw_test

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/outpost-appliance/outpost/disk"
	"github.com/outpost-appliance/outpost/disk/disktest"
	"github.com/outpost-appliance/outpost/disk/raw"
)

func TestWrite(t *testing.T) {
	disktest.Prove(t, "raw", raw.Write, raw.Options{})
}

// The copy of a 1 GiB disk holding 3.5 MiB must use about that much space.
func TestSparse(t *testing.T) {
	var spec disktest.Spec
	for _, s := range disktest.Disks() {
		if s.Name == "sparse-1g" {
			spec = s
		}
	}
	img, err := disk.OpenRaw(disktest.MakeRaw(t, spec))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	out := filepath.Join(t.TempDir(), "copy.raw")
	if _, err := disk.WriteFile(out, img, raw.Write, raw.Options{}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	used := fi.Sys().(*syscall.Stat_t).Blocks * 512
	if fi.Size() != 1<<30 || used > 8<<20 {
		t.Errorf("copy of sparse-1g: size %d, %d bytes allocated; want 1 GiB and at most 8 MiB", fi.Size(), used)
	}
}

// failing reads fail past an offset, as a disk on a failing device does.
type failing struct {
	*disk.Raw
	after int64
}

var errDevice = errors.New("input/output error")

func (f failing) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.after {
		return 0, errDevice
	}
	return f.Raw.ReadAt(p, off)
}

func TestNoPartialOutput(t *testing.T) {
	dir := t.TempDir()
	img, err := disk.OpenRaw(disktest.MakeRaw(t, disktest.Spec{Name: "data", Size: 1 << 20, Regions: []disktest.Region{{Len: 1 << 20}}}))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	out := filepath.Join(dir, "out.raw")
	if _, err := disk.WriteFile(out, failing{img, 512 << 10}, raw.Write, raw.Options{}); !errors.Is(err, errDevice) {
		t.Fatalf("got %v, want the read error", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("failed write left %v behind", ents)
	}
	if _, err := disk.WriteFile(filepath.Join(dir, "missing", "out.raw"), img, raw.Write, raw.Options{}); err == nil {
		t.Errorf("write into a missing directory succeeded")
	}
}
