package connector_test

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/connector"
	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/internal/cptest"
	"github.com/outpost-appliance/outpost/release"
	"github.com/outpost-appliance/outpost/upgrade"
	"github.com/outpost-appliance/outpost/upgrade/upgradetest"
)

// TestAgentUpgrade drives the real agent, the real control plane and the
// real installer on a disk image: ordered through the heartbeat, the agent
// downloads the bundle over mutual TLS, writes root B and a one-try entry
// and asks to reboot; the agent of the new version (booted as systemd-boot
// would, from the tried entry) blesses the boot and the rollout completes.
// A release whose trial boot never proves healthy comes back as a failure
// with the boot deadline's reason, and the rollout stops.
func TestAgentUpgrade(t *testing.T) {
	key, pub := upgradetest.KeyPair(t)
	r := newRigWith(t, cptest.Options{HeartbeatInterval: time.Second, ReleaseKeys: []ed25519.PublicKey{pub}})
	ctx := context.Background()
	v1 := upgradetest.BuildDisk(t, "lab", "1.2.3")
	esp := upgradetest.ExtractESP(t, v1.Raw)
	dir := t.TempDir()
	keys := filepath.Join(dir, "release-keys")
	pubPEM, err := release.MarshalPublicKey(pub)
	must(t, err)
	must(t, os.MkdirAll(keys, 0o755))
	must(t, os.WriteFile(filepath.Join(keys, "release.pub"), pubPEM, 0o644))
	state := filepath.Join(dir, "state")
	system := func(root upgrade.Partition, version string) *upgrade.System {
		cmdline, dev, sys := upgradetest.Live(t, dir, v1.Raw, v1, root.GUID)
		return &upgrade.System{Cmdline: cmdline, DevDir: dev, SysDir: sys, ESPDir: esp.Dir, KeysDir: keys, StateDir: state,
			Blessed: filepath.Join(dir, "run/boot-blessed"), Name: "lab", Architecture: "amd64", Version: version}
	}
	rebooted := make(chan struct{}, 1)
	boot := func(root upgrade.Partition, version string) func() {
		_, stop := r.runWith(nil, func(a *connector.Agent) {
			a.Version, a.Upgrades = version, system(root, version)
			a.Reboot = func() error { rebooted <- struct{}{}; return nil }
		})
		return stop
	}
	waitReboot := func(what string) {
		t.Helper()
		select {
		case <-rebooted:
		case <-time.After(60 * time.Second):
			t.Fatalf("the agent did not reboot after %s", what)
		}
	}
	// systemd-boot tries an entry: its counter goes from +1-0 to +0-1.
	try := func(gen int, slot string) {
		t.Helper()
		d := filepath.Join(esp.Dir, appliance.EntriesDir)
		must(t, os.Rename(filepath.Join(d, appliance.EntryFile(gen, slot, 1)), filepath.Join(d, strings.Replace(appliance.EntryFile(gen, slot, 1), "+1-0", "+0-1", 1))))
	}
	waitRollout := func(what string, ok func(cpapi.Group) bool) cpapi.Group {
		t.Helper()
		var g cpapi.Group
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if g, err = r.admin.Group(ctx, "lab"); err == nil && ok(g) {
				return g
			}
		}
		t.Fatalf("the rollout never became %s: %+v", what, g.Rollout)
		return g
	}

	stop := boot(v1.RootA, "1.2.3")
	r.waitStatus("connected", func(s connector.Status) bool { return s.State == connector.StateConnected })
	if _, err := r.admin.PublishReleaseFile(ctx, upgradetest.Bundle(t, upgradetest.BuildDisk(t, "lab", "1.3.0"), "lab", "1.3.0", key)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.admin.UpgradeNow(ctx, "lab"); err != nil {
		t.Fatal(err)
	}
	waitReboot("installing 1.3.0")
	// Heartbeats went on during the installation, each with the order:
	// one installation, no failure.
	select {
	case <-rebooted:
		t.Error("the agent rebooted twice: the order was installed more than once")
	case <-time.After(300 * time.Millisecond):
	}
	if c, err := r.admin.Connector(ctx, r.name); err != nil || c.UpgradeState == cpapi.UpgradeFailed {
		t.Errorf("after the installation the control plane sees %q %q (%v)", c.UpgradeState, c.UpgradeReason, err)
	}
	stop()
	es, err := esp.Entries()
	must(t, err)
	if len(es) != 2 || es[0].File != appliance.EntryFile(2, appliance.SlotB, 1) || es[0].Version != "1.3.0" {
		t.Fatalf("entries after the install: %+v", es)
	}
	if _, err := os.Stat(filepath.Join(state, "bundle.partial")); !os.IsNotExist(err) {
		t.Errorf("the downloaded bundle was left on the data partition: %v", err)
	}

	// The new system boots from root B: the agent blesses it.
	try(2, appliance.SlotB)
	stop = boot(v1.RootB, "1.3.0")
	g := waitRollout("done", func(g cpapi.Group) bool {
		return g.Rollout != nil && g.Rollout.State == cpapi.RolloutIdle && len(g.Rollout.Connectors) == 1 && g.Rollout.Connectors[0].Version == "1.3.0"
	})
	if g.Rollout.Connectors[0].Name != r.name {
		t.Errorf("the connector is %s after the upgrade, want %s", g.Rollout.Connectors[0].Name, r.name)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(esp.Dir, appliance.EntriesDir, appliance.EntryFile(2, appliance.SlotB, -1))); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the trial boot was not blessed: %v", upgradetest.EntryFiles(t, esp))
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "run/boot-blessed")); err != nil {
		t.Errorf("no blessed marker for the boot deadline: %v", err)
	}

	// A broken release: tried once on root A, never blessed, and the
	// machine is back on root B with the boot deadline's note.
	if _, err := r.admin.PublishReleaseFile(ctx, upgradetest.Bundle(t, upgradetest.BuildDisk(t, "lab", "1.4.0"), "lab", "1.4.0", key)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.admin.UpgradeNow(ctx, "lab"); err != nil {
		t.Fatal(err)
	}
	waitReboot("installing 1.4.0")
	stop()
	try(3, appliance.SlotA)
	note := "1.4.0 did not confirm a healthy boot within 5 minutes: outpost-connector.service is failed"
	must(t, os.WriteFile(filepath.Join(state, filepath.Base(appliance.TrialFailureFile)), []byte(note+"\n"), 0o600))
	stop = boot(v1.RootB, "1.3.0")
	defer stop()
	g = waitRollout("stopped", func(g cpapi.Group) bool { return g.Rollout != nil && g.Rollout.State == cpapi.RolloutStopped })
	if !strings.Contains(g.Rollout.Reason, "1.4.0") || !strings.Contains(g.Rollout.Reason, "outpost-connector.service is failed") {
		t.Errorf("stopped rollout's reason: %q", g.Rollout.Reason)
	}
	if got := upgradetest.EntryFiles(t, esp); len(got) != 1 || got[0] != appliance.EntryFile(2, appliance.SlotB, -1) {
		t.Errorf("entries after the rollback: %q", got)
	}
	c, err := r.admin.Connector(ctx, r.name)
	must(t, err)
	if c.Version != "1.3.0" || c.UpgradeState != cpapi.UpgradeFailed || !strings.Contains(c.UpgradeReason, "back on 1.3.0") {
		t.Errorf("connector after the rollback: version %s, upgrade %s %q", c.Version, c.UpgradeState, c.UpgradeReason)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
