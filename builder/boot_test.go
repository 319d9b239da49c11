package builder

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/builder/internal/testrootfs"
)

const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS.fd"
)

// needFile is needTool for data files installed by packages.
func needFile(t *testing.T, p, pkg string) {
	t.Helper()
	if _, err := os.Stat(p); err == nil {
		return
	} else if os.Getenv("CI") != "" {
		t.Fatalf("%s missing (CI requires it; Debian package %s): %v", p, pkg, err)
	}
	t.Skipf("%s missing; install %s (scripts/setup.sh)", p, pkg)
}

// TestBootUnderQEMU builds a disk from Debian's cloud kernel and a static Go
// init with Build, boots it with OVMF under TCG and expects the marker from
// the root filesystem on the serial console: proof that systemd-boot, the
// boot entry, the kernel, the initrd, PARTUUID and the ext4 root all work.
func TestBootUnderQEMU(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM (about 30 s under TCG)")
	}
	qemu := needTool(t, "qemu-system-x86_64")
	needFile(t, ovmfCode, "ovmf")
	needFile(t, ovmfVars, "ovmf")
	needFile(t, HostBootloader, "systemd-boot-efi")
	if _, err := testrootfs.CacheDir(); err != nil {
		t.Fatal(err)
	}
	needTool(t, "dpkg-deb")
	needTool(t, "go")

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	repo, err := filepath.Abs("..")
	must(t, err)
	t0 := time.Now()
	rootfs := t.TempDir()
	marker := "outpost-boot-ok-" + strings.Repeat("7", 8)
	kver, err := testrootfs.Make(ctx, rootfs, repo, marker)
	if err != nil {
		t.Fatalf("making the test root filesystem: %v", err)
	}
	t.Logf("test root filesystem made in %s", time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	work := t.TempDir()
	raw := filepath.Join(work, "boot.raw")
	res, err := Build(ctx, testSpec(t), rootfs, raw, Options{Epoch: testEpoch})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if res.Kernel != "boot/vmlinuz-"+kver {
		t.Fatalf("Build chose kernel %s, want %s", res.Kernel, kver)
	}
	t.Logf("disk built in %s", time.Since(t0).Round(time.Millisecond))
	vars := filepath.Join(work, "OVMF_VARS.fd")
	data, err := os.ReadFile(ovmfVars)
	must(t, err)
	must(t, os.WriteFile(vars, data, 0o644))

	bootCtx, stop := context.WithTimeout(ctx, 90*time.Second)
	defer stop()
	cmd := exec.CommandContext(bootCtx, qemu,
		"-machine", "q35", "-cpu", "max", "-m", "512", "-smp", "1",
		"-nographic", "-no-reboot", "-monitor", "none", "-serial", "stdio",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+ovmfCode,
		"-drive", "if=pflash,format=raw,unit=1,file="+vars,
		"-drive", "file="+raw+",format=raw,if=virtio",
		"-net", "none",
	)
	var console bytes.Buffer
	cmd.Stdout = &console
	cmd.Stderr = &console
	start := time.Now()
	runErr := cmd.Run()
	out := console.String()
	if !strings.Contains(out, "OUTPOST-MARKER: "+marker) {
		t.Fatalf("marker not on the serial console after %s (qemu: %v); console:\n%s", time.Since(start).Round(time.Second), runErr, tail(out, 4000))
	}
	if runErr != nil {
		t.Errorf("qemu did not power off cleanly: %v", runErr)
	}
	t.Logf("booted to the marker in %s", time.Since(start).Round(time.Second))
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
