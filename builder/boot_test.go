package builder

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/internal/testrootfs"
	"github.com/outpost-appliance/outpost/internal/testtool"
)

const (
	ovmfCode = testrootfs.OVMFCode
	ovmfVars = testrootfs.OVMFVars
)

// TestBootUnderQEMU builds a disk from Debian's cloud kernel and a static Go
// init with Build, boots it with OVMF under TCG and expects the marker from
// the root filesystem on the serial console: proof that systemd-boot, the
// boot entry, the kernel, the initrd, PARTUUID and the ext4 root all work.
func TestBootUnderQEMU(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM (about 30 s under TCG)")
	}
	testtool.Need(t, "qemu-system-x86_64", ovmfCode, ovmfVars, HostBootloader)
	if _, err := testrootfs.CacheDir(); err != nil {
		t.Fatal(err)
	}
	testtool.Need(t, "dpkg-deb", "go")

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
	bootCtx, stop := context.WithTimeout(ctx, 90*time.Second)
	defer stop()
	start := time.Now()
	out, runErr := testrootfs.Boot(bootCtx, raw, "raw", work)
	if !strings.Contains(out, testrootfs.MarkerLine(marker)) {
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
