package vmdk_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/outpost-appliance/outpost/ova/disk"
	"github.com/outpost-appliance/outpost/ova/disktest"
	"github.com/outpost-appliance/outpost/ova/vmdk"
)

func writeFile(opt vmdk.Options) disktest.WriteFunc {
	return func(dst string, img disk.Image) error {
		f, err := os.Create(dst)
		if err != nil {
			return err
		}
		if _, err := vmdk.WriteStreamOptimized(f, img, opt); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
}

func TestStreamOptimized(t *testing.T) {
	disktest.Prove(t, "vmdk", writeFile(vmdk.Options{}))
}

func TestZeroSizeRefused(t *testing.T) {
	raw := disktest.MakeRaw(t, disktest.Spec{Name: "zero"})
	img, err := disk.OpenRaw(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	var buf bytes.Buffer
	if _, err := vmdk.WriteStreamOptimized(&buf, img, vmdk.Options{}); !errors.Is(err, disk.ErrEmpty) {
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
		if _, err := vmdk.WriteStreamOptimized(io.Discard, img, o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
}
