package vmdk_test

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/disk"
	"github.com/outpost-appliance/outpost/disk/disktest"
	"github.com/outpost-appliance/outpost/disk/vmdk"
)

func TestStreamOptimized(t *testing.T) {
	disktest.Prove(t, "vmdk", vmdk.Write, vmdk.Options{})
}

func TestZeroSizeRefused(t *testing.T) {
	raw := disktest.MakeRaw(t, disktest.Spec{Name: "zero"})
	img, err := disk.OpenRaw(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	var buf bytes.Buffer
	if _, err := vmdk.Write(&buf, img, vmdk.Options{}); !errors.Is(err, disk.ErrEmpty) {
		t.Fatalf("writing a 0-byte disk: got %v, want disk.ErrEmpty", err)
	}
	if buf.Len() != 0 {
		t.Errorf("writing a 0-byte disk wrote %d bytes", buf.Len())
	}
}

func TestOptionsRefused(t *testing.T) {
	raw := disktest.MakeRaw(t, disktest.Spec{Name: "small", Size: 1 << 20})
	img, err := disk.OpenRaw(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	for _, o := range []vmdk.Options{{Level: 10}, {AdapterType: "pvscsi"}, {ExtentName: "a\"b"}} {
		if _, err := vmdk.Write(io.Discard, img, o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
}

// Allocation while writing must not grow with the data: the pipeline
// recycles a fixed set of buffers, so 64 MiB of data costs what 8 MiB does.
func TestMemoryBounded(t *testing.T) {
	alloc := func(data int64) uint64 {
		spec := disktest.Spec{Name: "mem", Size: 1 << 30, Seed: 11, Regions: []disktest.Region{
			{Off: 0, Len: data / 2, Kind: disktest.Random}, {Off: 512 << 20, Len: data / 2, Kind: disktest.Text}}}
		img, err := disk.OpenRaw(disktest.MakeRaw(t, spec))
		if err != nil {
			t.Fatal(err)
		}
		defer img.Close()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		info, err := vmdk.Write(io.Discard, img, vmdk.Options{Workers: 4})
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatal(err)
		}
		if info.Populated != data {
			t.Errorf("populated %d bytes, want %d", info.Populated, data)
		}
		return after.TotalAlloc - before.TotalAlloc
	}
	small, large := alloc(8<<20), alloc(64<<20)
	if large > 16<<20 || large > small+2<<20 {
		t.Errorf("writing 8 MiB of data allocated %d KiB, 64 MiB allocated %d KiB; want the same, at most 16 MiB", small>>10, large>>10)
	}
	t.Logf("allocated %d KiB for 8 MiB of data, %d KiB for 64 MiB", small>>10, large>>10)
}

// Holes and zero grains cost nothing but metadata.
func TestZerosNotStored(t *testing.T) {
	for _, s := range disktest.Disks() {
		if s.Name != "zeros-only" && s.Name != "empty" {
			continue
		}
		img, err := disk.OpenRaw(disktest.MakeRaw(t, s))
		if err != nil {
			t.Fatal(err)
		}
		info, err := vmdk.Write(io.Discard, img, vmdk.Options{})
		img.Close()
		if err != nil {
			t.Fatal(err)
		}
		// header area + GD marker + GD + footer marker + footer + EOS
		if want := int64(64<<10 + 5*512); info.Populated != 0 || info.Written != want {
			t.Errorf("%s: populated %d, wrote %d bytes; want 0 and %d", s.Name, info.Populated, info.Written, want)
		}
	}
}

type failingDisk struct {
	*disk.Raw
	after int64
}

var errDevice = errors.New("input/output error")

func (f failingDisk) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.after {
		return 0, errDevice
	}
	return f.Raw.ReadAt(p, off)
}

type failingWriter struct{ left int }

var errFull = errors.New("no space left on device")

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.left {
		n := w.left
		w.left = 0
		return n, errFull
	}
	w.left -= len(p)
	return len(p), nil
}

// Read and write errors stop the pipeline, reach the caller, and leave no
// goroutine behind.
func TestErrors(t *testing.T) {
	img, err := disk.OpenRaw(disktest.MakeRaw(t, disktest.RandomSpec("err", 3, 32<<20, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	spec := disktest.Spec{Name: "full", Size: 32 << 20, Seed: 4, Regions: []disktest.Region{{Len: 32 << 20, Kind: disktest.Random}}}
	full, err := disk.OpenRaw(disktest.MakeRaw(t, spec))
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	before := runtime.NumGoroutine()
	for _, tc := range []struct {
		name string
		img  disk.Image
		w    io.Writer
		want error
	}{
		{"read", failingDisk{full, 8 << 20}, io.Discard, errDevice},
		{"write", full, &failingWriter{left: 4 << 20}, errFull},
		{"write at the end", img, &failingWriter{left: 64<<10 + 512}, errFull},
	} {
		if _, err := vmdk.Write(tc.w, tc.img, vmdk.Options{Workers: 3}); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	for range 100 {
		if runtime.NumGoroutine() <= before {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%d goroutines before, %d after failed writes", before, runtime.NumGoroutine())
}

// The bytes do not depend on how many goroutines compress.
func TestWorkersDoNotChangeOutput(t *testing.T) {
	img, err := disk.OpenRaw(disktest.MakeRaw(t, disktest.RandomSpec("w", 8, 24<<20, 10)))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	var one, many bytes.Buffer
	if _, err := vmdk.Write(&one, img, vmdk.Options{Workers: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := vmdk.Write(&many, img, vmdk.Options{Workers: 7}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(one.Bytes(), many.Bytes()) {
		t.Errorf("1 worker wrote %d bytes, 7 workers %d bytes, not the same", one.Len(), many.Len())
	}
}
