package testrootfs

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// OVMF firmware from Debian's ovmf package.
const (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS.fd"
)

// Boot starts disk (format "raw" or "qcow2") on virtio under
// qemu-system-x86_64 with OVMF and TCG, with no network, and returns what
// the serial console printed until the VM powered off or ctx ended. The
// OVMF variable store is copied into scratch, a directory the caller owns.
func Boot(ctx context.Context, disk, format, scratch string) (console string, err error) {
	vars := filepath.Join(scratch, "OVMF_VARS.fd")
	data, err := os.ReadFile(OVMFVars)
	if err != nil {
		return "", fmt.Errorf("OVMF variable store (Debian package ovmf): %w", err)
	}
	if err := os.WriteFile(vars, data, 0o644); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-machine", "q35", "-cpu", "max", "-m", "512", "-smp", "1",
		"-nographic", "-no-reboot", "-monitor", "none", "-serial", "stdio",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+OVMFCode,
		"-drive", "if=pflash,format=raw,unit=1,file="+vars,
		"-drive", "file="+disk+",format="+format+",if=virtio",
		"-net", "none")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	return out.String(), err
}

// MarkerLine is what the test init prints for marker.
func MarkerLine(marker string) string { return "OUTPOST-MARKER: " + marker }
