// Command testinit is the init of the boot test's initrd: it proves that a
// disk made by `outpost image build` boots under UEFI to a root filesystem
// found by PARTUUID. It loads the virtio modules listed in /modules/order,
// finds the partition named by root=PARTUUID= on /proc/cmdline by reading
// the GPT itself, mounts it read-only, prints the marker file
// /outpost-marker on the console and powers off.
//
// It is built with CGO_ENABLED=0 and runs as PID 1; it is not part of the
// appliance.
package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	err := run()
	if err != nil {
		fmt.Printf("OUTPOST-TESTINIT-ERROR: %v\n", err)
	}
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Printf("testinit: power off: %v\n", err)
	}
	select {}
}

func run() error {
	for _, m := range []struct{ src, dst, typ string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"},
	} {
		_ = os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.typ, 0, ""); err != nil && err != unix.EBUSY {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	order, err := os.ReadFile("/modules/order")
	if err != nil {
		return err
	}
	for _, name := range strings.Fields(string(order)) {
		if err := loadModule("/modules/" + name); err != nil {
			return err
		}
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return err
	}
	fmt.Printf("testinit: cmdline: %s", cmdline)
	var partuuid string
	for _, f := range strings.Fields(string(cmdline)) {
		if v, ok := strings.CutPrefix(f, "root=PARTUUID="); ok {
			partuuid = strings.ToLower(v)
		}
	}
	if partuuid == "" {
		return fmt.Errorf("no root=PARTUUID= on the kernel command line")
	}
	var dev string
	for deadline := time.Now().Add(20 * time.Second); dev == "" && time.Now().Before(deadline); {
		dev, err = findPartition(partuuid)
		if dev == "" {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if dev == "" {
		return fmt.Errorf("no partition with PARTUUID %s (last error: %v)", partuuid, err)
	}
	fmt.Printf("testinit: root is %s\n", dev)
	_ = os.MkdirAll("/newroot", 0o755)
	if err := unix.Mount(dev, "/newroot", "ext4", unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("mount %s: %w", dev, err)
	}
	marker, err := os.ReadFile("/newroot/outpost-marker")
	if err != nil {
		return err
	}
	fmt.Printf("OUTPOST-MARKER: %s\n", strings.TrimSpace(string(marker)))
	return unix.Unmount("/newroot", 0)
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && err != unix.EEXIST {
		return fmt.Errorf("loading %s: %w", filepath.Base(path), err)
	}
	return nil
}

// findPartition reads the GPT of every virtio disk and returns the device
// of the partition whose unique GUID is partuuid.
func findPartition(partuuid string) (string, error) {
	disks, _ := filepath.Glob("/dev/vd[a-z]")
	var lastErr error
	for _, d := range disks {
		idx, err := gptIndex(d, partuuid)
		if err != nil {
			lastErr = err
			continue
		}
		if idx > 0 {
			p := fmt.Sprintf("%s%d", d, idx)
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
		}
	}
	return "", lastErr
}

func gptIndex(disk, partuuid string) (int, error) {
	f, err := os.Open(disk)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	hdr := make([]byte, 512)
	if _, err := f.ReadAt(hdr, 512); err != nil {
		return 0, err
	}
	if string(hdr[:8]) != "EFI PART" {
		return 0, fmt.Errorf("%s: no GPT", disk)
	}
	le := binary.LittleEndian
	lba, n, size := le.Uint64(hdr[0x48:]), le.Uint32(hdr[0x50:]), le.Uint32(hdr[0x54:])
	entries := make([]byte, int(n)*int(size))
	if _, err := f.ReadAt(entries, int64(lba)*512); err != nil {
		return 0, err
	}
	for i := 0; i < int(n); i++ {
		g := entries[i*int(size)+16 : i*int(size)+32]
		s := fmt.Sprintf("%08x-%04x-%04x-%x-%x", le.Uint32(g[0:]), le.Uint16(g[4:]), le.Uint16(g[6:]), g[8:10], g[10:16])
		if s == partuuid {
			return i + 1, nil
		}
	}
	return 0, nil
}
