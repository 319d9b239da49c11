package vmdk_test

import (
	"os"
	"testing"

	"github.com/outpost-appliance/outpost/disk"
	"github.com/outpost-appliance/outpost/disk/disktest"
	"github.com/outpost-appliance/outpost/disk/vmdk"
)

// BenchmarkStreamOptimized converts a 512 MiB disk holding about 320 MiB of
// system files, zeros and holes, with our writer and with
// `qemu-img convert -O vmdk -o subformat=streamOptimized`, in the same run.
func BenchmarkStreamOptimized(b *testing.B) {
	src := disktest.MakeMixed(b, 512<<20, 320<<20)
	disktest.Bench(b, src, func(dst, src string) error {
		img, err := disk.OpenRaw(src)
		if err != nil {
			return err
		}
		defer img.Close()
		f, err := os.Create(dst)
		if err != nil {
			return err
		}
		if _, err := vmdk.Write(f, img, vmdk.Options{}); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}, "qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", "SRC", "DST")
}
