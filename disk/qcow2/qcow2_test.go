package qcow2_test

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"testing"

	"github.com/outpost-appliance/outpost/disk"
	"github.com/outpost-appliance/outpost/disk/disktest"
	"github.com/outpost-appliance/outpost/disk/qcow2"
)

func TestWrite(t *testing.T) {
	disktest.Prove(t, "qcow2", qcow2.Write, qcow2.Options{})
}

func TestZeroSizeRefused(t *testing.T) {
	img, err := disk.OpenRaw(disktest.MakeRaw(t, disktest.Spec{Name: "zero"}))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	var buf bytes.Buffer
	if _, err := qcow2.Write(&buf, img, qcow2.Options{}); !errors.Is(err, disk.ErrEmpty) || buf.Len() != 0 {
		t.Fatalf("writing a 0-byte disk: got %v and %d bytes, want disk.ErrEmpty and nothing", err, buf.Len())
	}
}

// Allocation must not grow with the data.
func TestMemoryBounded(t *testing.T) {
	spec := disktest.Spec{Name: "mem", Size: 1 << 30, Seed: 12, Regions: []disktest.Region{
		{Off: 0, Len: 16 << 20, Kind: disktest.Random}, {Off: 700 << 20, Len: 32 << 20, Kind: disktest.Text}}}
	img, err := disk.OpenRaw(disktest.MakeRaw(t, spec))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = qcow2.Write(io.Discard, img, qcow2.Options{})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Errorf("writing 48 MiB of data allocated %d MiB; want at most 8 MiB", alloc>>20)
	}
}

// Holes and zero clusters are not stored: only header, refcount table and
// block, and L1 table.
func TestZerosNotStored(t *testing.T) {
	for _, s := range disktest.Disks() {
		if s.Name != "zeros-only" && s.Name != "empty" {
			continue
		}
		img, err := disk.OpenRaw(disktest.MakeRaw(t, s))
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		_, err = qcow2.Write(&buf, img, qcow2.Options{})
		img.Close()
		if err != nil {
			t.Fatal(err)
		}
		if buf.Len() != 4<<16 {
			t.Errorf("%s: wrote %d bytes, want 4 clusters", s.Name, buf.Len())
		}
	}
}
