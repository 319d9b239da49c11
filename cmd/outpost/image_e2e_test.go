package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/internal/govctest"
	"github.com/outpost-appliance/outpost/internal/testrootfs"
	"github.com/outpost-appliance/outpost/internal/testtool"
)

// TestImageBuildEndToEnd is the main job as a user runs it: `outpost image
// build` turns a root filesystem (Debian's cloud kernel and a static Go
// init) into qcow2 and OVA; qemu-img checks the qcow2, the qcow2 boots under
// QEMU with OVMF (TCG) to the marker on the serial console, and govc
// imports the OVA into vcsim with property values.
func TestImageBuildEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	testtool.Need(t, "qemu-system-x86_64", "qemu-img", "dpkg-deb", testrootfs.OVMFCode, testrootfs.OVMFVars)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	rootfs := t.TempDir()
	marker := "outpost-e2e-marker-42"
	if _, err := testrootfs.Make(ctx, rootfs, repo, marker); err != nil {
		t.Fatalf("making the test root filesystem: %v", err)
	}
	out := t.TempDir()
	r := runOutpost(t, "", "image", "build", "--rootfs", rootfs, "--format", "qcow2,ova", "-o", out, "--json")
	if r.code != 0 {
		t.Fatalf("image build: exit %d\n%s", r.code, r.stderr)
	}
	var res imageResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("image build --json: %v\n%s", err, r.stdout)
	}
	qcow := filepath.Join(out, "outpost-connector-0.1.0.qcow2")
	ovaPath := filepath.Join(out, "outpost-connector-0.1.0.ova")
	if strings.Join(res.Outputs, ",") != qcow+","+ovaPath {
		t.Fatalf("outputs %v, want %s and %s", res.Outputs, qcow, ovaPath)
	}
	if b, err := exec.Command("qemu-img", "check", qcow).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img check: %v\n%s", err, b)
	}

	// Boot the qcow2 as a homelab user would.
	bootCtx, stop := context.WithTimeout(ctx, 2*time.Minute)
	defer stop()
	console, runErr := testrootfs.Boot(bootCtx, qcow, "qcow2", t.TempDir())
	if !strings.Contains(console, testrootfs.MarkerLine(marker)) {
		if len(console) > 4000 {
			console = console[len(console)-4000:]
		}
		t.Fatalf("marker not on the serial console (qemu: %v); console:\n%s", runErr, console)
	}

	// Import the OVA into vcsim with the real govc, setting properties.
	govc := govctest.Govc(t)
	sim := govctest.Simulator(t)
	opts := map[string]any{
		"Name": "melbourne-1",
		"PropertyMapping": []map[string]string{
			{"Key": "outpost.hostname", "Value": "melbourne-1"},
			{"Key": "outpost.ipv4.mode", "Value": "Static"},
			{"Key": "outpost.ipv4.address", "Value": "192.0.2.10/24"},
		},
	}
	optsPath := filepath.Join(t.TempDir(), "opts.json")
	b, _ := json.Marshal(opts)
	if err := os.WriteFile(optsPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	govctest.Run(t, govc, sim.Env, "import.ova", "-pool", "DC0_C0/Resources", "-ds", "LocalDS_0", "-options", optsPath, ovaPath)
	info := govctest.Run(t, govc, sim.Env, "vm.info", "-e", "-json", "melbourne-1")
	for _, want := range []string{`"outpost.hostname"`, `"melbourne-1"`, `"192.0.2.10/24"`, `"numCPU":2`, `"memoryMB":4096`} {
		if !strings.Contains(strings.ReplaceAll(info, " ", ""), want) {
			t.Errorf("vm.info of the imported OVA lacks %s", want)
		}
	}
}
