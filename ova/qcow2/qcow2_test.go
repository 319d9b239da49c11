package qcow2_test

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"github.com/outpost-appliance/outpost/ova/disk"
	"github.com/outpost-appliance/outpost/ova/disktest"
	"github.com/outpost-appliance/outpost/ova/qcow2"
)

func writeFile(dst string, img disk.Image) error {
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	if err := qcow2.Write(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func TestWrite(t *testing.T) {
	disktest.Prove(t, "qcow2", writeFile)
}

func TestZeroSizeRefused(t *testing.T) {
	img, err := disk.OpenRaw(disktest.MakeRaw(t, disktest.Spec{Name: "zero"}))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	var buf bytes.Buffer
	if err := qcow2.Write(&buf, img); !errors.Is(err, disk.ErrEmpty) || buf.Len() != 0 {
		t.Fatalf("writing a 0-byte disk: got %v and %d bytes, want disk.ErrEmpty and nothing", err, buf.Len())
	}
}
