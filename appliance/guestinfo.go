package appliance

import "strings"

// VMware guestinfo variables the appliance and the deployer share.
const (
	// GuestinfoOVFEnv carries the OVF environment: VMware Tools sets it on
	// vCenter, `outpost deploy` on a standalone ESXi host.
	GuestinfoOVFEnv = "guestinfo.ovfEnv"
	// GuestinfoStatus is where first boot publishes its state through
	// VMware Tools, as GuestStatus renders it, for vSphere tooling.
	GuestinfoStatus = "guestinfo.outpost.status"
)

// States in GuestinfoStatus that tooling acts on (first boot publishes
// others while it works: configuring, waiting_for_key, not_started).
const (
	GuestEnrolled = "enrolled"
	GuestFailed   = "failed"
)

// GuestStatus renders first boot's state for GuestinfoStatus:
// "STATE[ NAME][: FIRST LINE OF THE ERROR]", e.g. "enrolled Melbourne-1"
// or "failed: provisioning key: curly quote …".
func GuestStatus(state, name, lastErr string) string {
	line := state
	if name != "" {
		line += " " + name
	}
	if lastErr != "" {
		line += ": " + strings.SplitN(lastErr, "\n", 2)[0]
	}
	return line
}

// ParseGuestStatus splits a GuestinfoStatus value into the state and the
// reason after ": " (empty when there is none).
func ParseGuestStatus(v string) (state, reason string) {
	head, reason, _ := strings.Cut(v, ": ")
	state, _, _ = strings.Cut(head, " ")
	return state, strings.TrimSpace(reason)
}
