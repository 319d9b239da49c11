package disktest_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/outpost-appliance/outpost/disk"
	"github.com/outpost-appliance/outpost/disk/disktest"
	"github.com/outpost-appliance/outpost/disk/qcow2"
	"github.com/outpost-appliance/outpost/disk/raw"
	"github.com/outpost-appliance/outpost/disk/vmdk"
)

// recorder is a testing.TB that notes failures instead of failing.
type recorder struct {
	testing.TB
	failures []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(f string, a ...any) {
	r.failures = append(r.failures, fmt.Sprintf(f, a...))
}
func (r *recorder) Fatalf(f string, a ...any) {
	r.Errorf(f, a...)
	runtime.Goexit()
}
func (r *recorder) Fatal(a ...any) { r.Fatalf("%s", fmt.Sprint(a...)) }

func verify(t *testing.T, format, path, raw string) []string {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		disktest.Verify(r, format, path, raw)
	}()
	<-done
	return r.failures
}

// Verify must catch an image whose contents differ from the raw disk by one
// byte, in every format.
func TestVerifyCatchesDifference(t *testing.T) {
	spec := disktest.Spec{Name: "a", Size: 3<<20 + 100, Seed: 9, Regions: []disktest.Region{{Off: 1 << 20, Len: 1 << 20, Kind: disktest.Text}}}
	rawA := disktest.MakeRaw(t, spec)
	rawB := disktest.MakeRaw(t, spec)
	f, err := os.OpenFile(rawB, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff}, 3<<20+5); err != nil { // in the unaligned tail
		t.Fatal(err)
	}
	f.Close()
	img, err := disk.OpenRaw(rawB)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	dir := t.TempDir()
	write := map[string]func(*os.File) error{
		"vmdk": func(f *os.File) error {
			_, err := vmdk.Write(f, img, vmdk.Options{})
			return err
		},
		"qcow2": func(f *os.File) error {
			_, err := qcow2.Write(f, img, qcow2.Options{})
			return err
		},
		"raw": func(f *os.File) error {
			_, err := raw.Write(f, img, raw.Options{})
			return err
		},
	}
	for format, w := range write {
		p := filepath.Join(dir, "b."+format)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := w(f); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if fails := verify(t, format, p, rawB); len(fails) != 0 {
			t.Fatalf("%s of the same disk fails Verify: %v", format, fails)
		}
		fails := verify(t, format, p, rawA)
		if len(fails) == 0 {
			t.Errorf("%s of a disk that differs by one byte passes Verify", format)
		}
		if format == "vmdk" && !strings.Contains(fmt.Sprint(fails), "libvmdk reads") {
			t.Errorf("reading the VMDK through libvmdk did not notice the difference: %q", fails)
		}
	}
}
