// Package vmtools runs VMware Tools' vmware-rpctool, the guest's side of
// the guestinfo variables: first boot reads its OVF environment through it
// and reports its status back to vSphere.
//
// It is not a guestinfo client of its own; without VMware Tools installed
// there is nothing to run and callers skip what needs it.
package vmtools

import (
	"context"
	"os"
	"os/exec"
	"strings"
)

// RPC runs one vmware-rpctool command (e.g. "info-get guestinfo.ovfEnv")
// and returns its output.
type RPC func(ctx context.Context, cmd string) ([]byte, error)

// Lookup returns vmware-rpctool on PATH as an RPC, or nil when it is not
// installed or the machine is not a VMware VM: the appliance image carries
// open-vm-tools everywhere, and under QEMU every call would fail.
func Lookup() RPC {
	tool, err := exec.LookPath("vmware-rpctool")
	if err != nil {
		return nil
	}
	if v, err := os.ReadFile("/sys/class/dmi/id/sys_vendor"); err != nil || !strings.Contains(string(v), "VMware") {
		return nil
	}
	return func(ctx context.Context, cmd string) ([]byte, error) {
		return exec.CommandContext(ctx, tool, cmd).Output()
	}
}
