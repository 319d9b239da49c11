package qcow2_test

import (
	"testing"

	"github.com/outpost-appliance/outpost/disk"
	"github.com/outpost-appliance/outpost/disk/disktest"
	"github.com/outpost-appliance/outpost/disk/qcow2"
)

// BenchmarkWrite converts a 512 MiB disk holding about 320 MiB of system
// files, zeros and holes, with our writer and with
// `qemu-img convert -O qcow2`, in the same run.
func BenchmarkWrite(b *testing.B) {
	src := disktest.MakeMixed(b, 512<<20, 320<<20)
	disktest.Bench(b, src, func(dst, src string) error {
		img, err := disk.OpenRaw(src)
		if err != nil {
			return err
		}
		defer img.Close()
		_, err = disk.WriteFile(dst, img, qcow2.Write, qcow2.Options{})
		return err
	}, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", "SRC", "DST")
}
