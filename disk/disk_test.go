package disk_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/outpost-appliance/outpost/disk"
)

func TestGrains(t *testing.T) {
	const g = disk.GrainSize
	for _, tc := range []struct {
		name     string
		in       []disk.Extent
		capacity int64
		want     []disk.Extent
	}{
		{"none", nil, 4 * g, nil},
		{"inside one grain", []disk.Extent{{10, 20}}, 4 * g, []disk.Extent{{0, g}}},
		{"across a boundary", []disk.Extent{{g - 1, 2}}, 4 * g, []disk.Extent{{0, 2 * g}}},
		{"same grain merged", []disk.Extent{{0, 1}, {g - 1, 1}}, 4 * g, []disk.Extent{{0, g}}},
		{"adjacent merged", []disk.Extent{{0, g}, {g, g}}, 4 * g, []disk.Extent{{0, 2 * g}}},
		{"unsorted", []disk.Extent{{3 * g, 1}, {0, 1}}, 4 * g, []disk.Extent{{0, g}, {3 * g, g}}},
		{"contained", []disk.Extent{{0, 3 * g}, {g, 1}}, 4 * g, []disk.Extent{{0, 3 * g}}},
		{"unaligned tail", []disk.Extent{{3*g + 5, 7}}, 4 * g, []disk.Extent{{3 * g, g}}},
		{"clipped", []disk.Extent{{3 * g, 5 * g}}, 4 * g, []disk.Extent{{3 * g, g}}},
		{"empty extent", []disk.Extent{{g, 0}}, 4 * g, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := disk.Grains(tc.in, tc.capacity); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Grains(%v) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestRawExtentsSkipHoles(t *testing.T) {
	p := filepath.Join(t.TempDir(), "d.raw")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	const mib = 1 << 20
	f.Truncate(64 * mib)
	f.WriteAt([]byte("data"), 10*mib)
	f.WriteAt(make([]byte, mib), 40*mib) // written zeros are data to the filesystem
	f.Close()
	img, err := disk.OpenRaw(p)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	exts, err := img.Extents()
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	covers := func(off int64) bool {
		for _, e := range exts {
			if off >= e.Off && off < e.End() {
				return true
			}
		}
		return false
	}
	for _, e := range exts {
		total += e.Len
	}
	if !covers(10*mib) || !covers(40*mib) || !covers(41*mib-1) {
		t.Errorf("extents %v miss written data", exts)
	}
	if total > 4*mib {
		t.Errorf("extents %v cover %d bytes of a file with 1 MiB written: holes not skipped", exts, total)
	}
	if img.Size() != 64*mib {
		t.Errorf("size %d", img.Size())
	}
}

func TestReadGrainPadsTail(t *testing.T) {
	p := filepath.Join(t.TempDir(), "d.raw")
	if err := os.WriteFile(p, []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := disk.OpenRaw(p)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	buf := make([]byte, disk.GrainSize)
	for i := range buf {
		buf[i] = 0xee
	}
	if err := disk.ReadGrain(img, buf, 0); err != nil {
		t.Fatal(err)
	}
	if string(buf[:3]) != "abc" || !disk.IsZero(buf[3:]) {
		t.Errorf("grain of a 3-byte disk is not abc + zeros")
	}
	if c, err := disk.Capacity(img); c != disk.GrainSize || err != nil {
		t.Errorf("Capacity = %d, %v; want %d", c, err, disk.GrainSize)
	}
}

type short struct{ *disk.Raw }

func (s short) ReadAt(p []byte, off int64) (int, error) { return 1, io.EOF }

func TestReadGrainShortRead(t *testing.T) {
	p := filepath.Join(t.TempDir(), "d.raw")
	os.WriteFile(p, make([]byte, 100), 0o644)
	img, err := disk.OpenRaw(p)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if err := disk.ReadGrain(short{img}, make([]byte, disk.GrainSize), 0); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short read: got %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestIsZero(t *testing.T) {
	b := make([]byte, 1000)
	if !disk.IsZero(b) {
		t.Fatal("zeros not zero")
	}
	for _, i := range []int{0, 7, 63, 64, 511, 999} {
		b[i] = 1
		if disk.IsZero(b) {
			t.Errorf("byte %d set but IsZero", i)
		}
		b[i] = 0
	}
}

func TestOpenRawRefusesDirectory(t *testing.T) {
	if _, err := disk.OpenRaw(t.TempDir()); err == nil {
		t.Error("OpenRaw of a directory succeeded")
	}
}
