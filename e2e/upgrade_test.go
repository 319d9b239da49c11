package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/artifact"
	"github.com/outpost-appliance/outpost/builder"
	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/imagebuild"
	"github.com/outpost-appliance/outpost/qemu"
)

// Versions of the upgrade tests: the appliance image is baseVersion (the
// embedded spec's), then a good and a broken release.
const (
	goodVersion   = "0.2.0"
	brokenVersion = "0.3.0"
)

var (
	bundlesOnce        sync.Once
	goodBundle, broken string
	bundleDir          string
	bundlesErr         error
)

// releaseBundles builds, with the test release key, the good release
// (the spec at goodVersion) and a broken one: its agent fails to start, and
// its boot deadline is 45 s instead of 5 minutes so the test need not wait.
func releaseBundles(t testing.TB) (good, bad string) {
	t.Helper()
	applianceImage(t) // the key, and the cached root filesystem
	bundlesOnce.Do(func() {
		dir, err := os.MkdirTemp("", "outpost-e2e-bundles-*")
		if err != nil {
			bundlesErr = err
			return
		}
		bundleDir = dir
		wd, _ := os.Getwd()
		build := func(version string, extra ...builder.SpecFile) (string, error) {
			spec, _, err := imagebuild.LoadSpec("")
			if err != nil {
				return "", err
			}
			spec.Version = version
			spec.Files = append(spec.Files, extra...)
			raw, _ := artifact.Lookup("raw")
			var log strings.Builder
			res, err := imagebuild.Build(context.Background(), imagebuild.Request{Spec: spec, Formats: []artifact.Format{raw}, OutDir: dir,
				Log: &log, CacheDir: cacheDir(), ModuleDir: filepath.Dir(wd), SourceDateEpoch: "1767225600", ReleaseKey: releaseKey}, "")
			if err != nil {
				return "", fmt.Errorf("building %s: %v\n%s", version, err, log.String())
			}
			os.Remove(res.Outputs[0]) // only the bundle is needed
			return res.Outputs[1], nil
		}
		start := time.Now()
		if goodBundle, bundlesErr = build(goodVersion); bundlesErr != nil {
			return
		}
		str := func(s string) *string { return &s }
		broken, bundlesErr = build(brokenVersion,
			builder.SpecFile{Path: "/etc/systemd/system/outpost-connector.service.d/broken.conf", Content: str("[Service]\nExecStart=\nExecStart=/bin/false\n")},
			builder.SpecFile{Path: "/etc/systemd/system/outpost-boot-deadline.timer.d/test.conf", Content: str("[Timer]\nOnBootSec=\nOnBootSec=45s\n")})
		fmt.Fprintf(os.Stderr, "e2e: release bundles built in %s\n", time.Since(start).Round(time.Second))
	})
	if bundlesErr != nil {
		t.Fatal(bundlesErr)
	}
	return goodBundle, broken
}

// machine is a VM that the test powers on again whenever the guest
// reboots (QEMU runs with -no-reboot): a cold boot, as a hypervisor's
// reset is, without relying on a reset inside QEMU.
type machine struct {
	l     *lab
	name  string
	mu    sync.Mutex
	vm    *qemu.VM
	boots int
	stop  chan struct{}
	done  chan struct{}
}

func (l *lab) machine(name, mac string, cfg map[string]string) *machine {
	t := l.t
	c := l.vmConfig(name, mac, cfg, "")
	c.NoReboot = true
	if l.machines > 0 {
		c.Tap = l.newTap()
	}
	l.machines++
	m := &machine{l: l, name: name, vm: l.startVM(c), boots: 1, stop: make(chan struct{}), done: make(chan struct{})}
	go m.supervise()
	t.Cleanup(func() {
		close(m.stop)
		<-m.done
		m.mu.Lock()
		m.vm.Stop()
		m.mu.Unlock()
	})
	return m
}

func (m *machine) supervise() {
	defer close(m.done)
	for {
		m.mu.Lock()
		vm := m.vm
		m.mu.Unlock()
		select {
		case <-m.stop:
			return
		case <-vm.Done():
		}
		select {
		case <-m.stop:
			return
		default:
		}
		if vm.Uptime() < 5*time.Second {
			m.l.t.Errorf("%s: QEMU exited %s after it started; not starting it again:\n%s", vm.Name, vm.Uptime().Round(time.Millisecond), tail(vm.Serial(), 2000))
			return
		}
		nv, err := qemu.Start(context.Background(), vm.Config)
		if err != nil {
			m.l.t.Errorf("%s: power on again after the guest rebooted: %v", vm.Name, err)
			return
		}
		m.mu.Lock()
		m.vm, m.boots = nv, m.boots+1
		m.mu.Unlock()
	}
}

func (m *machine) bootCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.boots
}

func (m *machine) serial() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.vm.Serial()
}

// sample is what the control plane said about a group's connectors at one
// moment.
type sample struct {
	at time.Time
	cs map[string]cpapi.Connector
}

// timeline polls the control plane's view of group until stopped.
type timeline struct {
	mu      sync.Mutex
	samples []sample
	stop    chan struct{}
	done    chan struct{}
}

func (l *lab) timeline(group string) *timeline {
	tl := &timeline{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(tl.done)
		for {
			var cs []cpapi.Connector
			out, err := l.output("connectors", "list", "--group", group, "--json")
			if err == nil && json.Unmarshal([]byte(out), &cs) == nil {
				s := sample{at: time.Now(), cs: map[string]cpapi.Connector{}}
				for _, c := range cs {
					s.cs[c.Name] = c
				}
				tl.mu.Lock()
				tl.samples = append(tl.samples, s)
				tl.mu.Unlock()
			}
			select {
			case <-tl.stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	return tl
}

func (tl *timeline) end() []sample {
	close(tl.stop)
	<-tl.done
	return tl.samples
}

// gaps returns, per connector, the longest time between two heartbeats
// the control plane recorded (LastSeen changing) across the samples.
func gaps(samples []sample) map[string]time.Duration {
	last := map[string]time.Time{}
	out := map[string]time.Duration{}
	for _, s := range samples {
		for n, c := range s.cs {
			if prev, ok := last[n]; ok && c.LastSeen.After(prev) {
				out[n] = max(out[n], c.LastSeen.Sub(prev))
			}
			if c.LastSeen.After(last[n]) {
				last[n] = c.LastSeen
			}
		}
	}
	return out
}

// upgradeGood publishes the good release, starts the pair's rollout and
// waits until both connectors are healthy on it. It checks the timeline:
// never both unreachable, never both ordered at once. It returns the time
// the pair took and the timeline.
func upgradeGood(t testing.TB, l *lab, bundle string) (time.Duration, []sample) {
	t.Helper()
	tl := l.timeline("pair")
	start := time.Now()
	l.outpost("releases", "publish", bundle)
	l.outpost("upgrade", "--group", "pair", "--now")
	waitFor(t, "both connectors healthy on "+goodVersion, 15*time.Minute, func() bool {
		cs := l.connectors()
		n := 0
		for _, c := range cs {
			if c.Version == goodVersion && c.Health == cpapi.HealthHealthy {
				n++
			}
		}
		return n == 2
	})
	pair := time.Since(start)
	// A couple more heartbeats, so the timeline has the last one back.
	time.Sleep(5 * time.Second)
	samples := tl.end()
	for _, s := range samples {
		down, upgrading := 0, 0
		for _, c := range s.cs {
			if c.Health != cpapi.HealthHealthy {
				down++
			}
			if c.UpgradeTarget != "" && c.Version != c.UpgradeTarget {
				upgrading++
			}
		}
		if down == 2 {
			t.Errorf("at %s both connectors were %s/%s", s.at.Format(time.TimeOnly), s.cs["Pair-1"].Health, s.cs["Pair-2"].Health)
		}
		if upgrading == 2 {
			t.Errorf("at %s both connectors were ordered to upgrade", s.at.Format(time.TimeOnly))
		}
	}
	return pair, samples
}

// BenchmarkUpgradePair reports, for a pair upgraded through the control
// plane under QEMU (TCG unless /dev/kvm works): the longest time one
// connector was without a heartbeat during its upgrade (its reboot into the
// new release; heartbeats every 2 s), and the time from publishing the
// release to both healthy on it (download, checks and write while serving,
// then the reboot, one connector after the other).
func BenchmarkUpgradePair(b *testing.B) {
	for i := 0; i < b.N; i++ {
		l, _ := upgradeLab(b)
		good, _ := releaseBundles(b)
		pair, samples := upgradeGood(b, l, good)
		g := gaps(samples)
		worst := max(g["Pair-1"], g["Pair-2"])
		b.ReportMetric(worst.Seconds(), "s-unreachable-max")
		b.ReportMetric(pair.Seconds(), "s-pair")
		b.Logf("one connector without heartbeat at most %.0f s (Pair-1 %.0f s, Pair-2 %.0f s); the pair upgraded in %.0f s",
			worst.Seconds(), g["Pair-1"].Seconds(), g["Pair-2"].Seconds(), pair.Seconds())
	}
}

func (l *lab) rollout(group string) cpapi.Rollout {
	var g cpapi.Group
	if err := json.Unmarshal([]byte(l.outpost("groups", "show", group, "--json")), &g); err != nil {
		l.t.Fatal(err)
	}
	if g.Rollout == nil {
		l.t.Fatalf("groups show %s has no rollout", group)
	}
	return *g.Rollout
}

// upgradeLab starts a pair on the appliance image, enrolled and healthy,
// with a control plane that trusts the test release key and asks for a
// heartbeat every 2 s (so a connector that stops is unreachable after 6 s).
func upgradeLab(t testing.TB) (*lab, [2]*machine) {
	releaseBundles(t)
	l := newLab(t, "--release-key", releasePub, "--heartbeat-interval", "2s", "--upgrade-timeout", "10m")
	key := l.key("Pair", 2)
	var ms [2]*machine
	start := time.Now()
	for i := range ms {
		ms[i] = l.machine(fmt.Sprintf("pair%d", i+1), fmt.Sprintf("00:50:56:00:e3:%02x", i+1), fwcfg(map[string]string{
			appliance.PropProvisionKey: key, appliance.PropAdminPasswordHash: passwordHash(t)}))
	}
	for i := range ms {
		l.healthy(fmt.Sprintf("Pair-%d", i+1), start, 5*time.Minute)
	}
	return l, ms
}

// TestUpgradePair upgrades an enrolled pair through the control plane:
// one connector at a time, never both unreachable, both on the new version
// with the names and certificates they had. Then a broken release (its
// agent does not start) is tried on the first connector, rolled back by
// the boot deadline and systemd-boot's boot counting, and the rollout
// stops with the reason; the second connector is never touched.
func TestUpgradePair(t *testing.T) {
	l, ms := upgradeLab(t)
	good, bad := releaseBundles(t)
	before := map[string]cpapi.Connector{}
	for _, c := range l.connectors() {
		before[c.Name] = c
	}

	pair, samples := upgradeGood(t, l, good)
	g := gaps(samples)
	t.Logf("pair upgraded to %s in %s; longest time without a heartbeat: Pair-1 %s, Pair-2 %s (heartbeat every 2 s, TCG)",
		goodVersion, pair.Round(time.Second), g["Pair-1"].Round(time.Second), g["Pair-2"].Round(time.Second))
	for _, c := range l.connectors() {
		b, ok := before[c.Name]
		if !ok || c.Serial != b.Serial || c.Fingerprint != b.Fingerprint {
			t.Errorf("connector %s after the upgrade (serial %s) is not the one enrolled before (%+v)", c.Name, c.Serial, b.Serial)
		}
	}
	if n := l.uses("Pair"); n != 2 {
		t.Errorf("key used %d times after the upgrade, want 2 (no second enrollment)", n)
	}
	for _, m := range ms {
		if n := m.bootCount(); n < 2 {
			t.Errorf("%s was powered on %d times: it did not reboot into the new release", m.name, n)
		}
	}
	if r := l.rollout("pair"); r.State != cpapi.RolloutIdle || r.Target != goodVersion {
		t.Errorf("rollout after the upgrade: %+v", r)
	}

	// The broken release.
	tl := l.timeline("pair")
	l.outpost("releases", "publish", bad)
	l.outpost("upgrade", "--group", "pair", "--now")
	var r cpapi.Rollout
	waitFor(t, "the rollout of "+brokenVersion+" to stop", 15*time.Minute, func() bool {
		r = l.rollout("pair")
		return r.State == cpapi.RolloutStopped
	})
	samples = tl.end()
	if !strings.Contains(r.Reason, "Pair-1") || !strings.Contains(r.Reason, brokenVersion) {
		t.Errorf("stopped rollout's reason does not name the connector and version: %q", r.Reason)
	}
	t.Logf("broken release stopped: %s", r.Reason)
	c1 := l.healthy("Pair-1", time.Now(), 3*time.Minute)
	if c1.Version != goodVersion {
		t.Errorf("Pair-1 runs %s after the failed upgrade, want %s (rolled back)", c1.Version, goodVersion)
	}
	if c1.UpgradeState != cpapi.UpgradeFailed || !strings.Contains(c1.UpgradeReason, brokenVersion) {
		t.Errorf("Pair-1 reports upgrade %q: %q", c1.UpgradeState, c1.UpgradeReason)
	}
	for _, s := range samples {
		if c, ok := s.cs["Pair-2"]; ok && (c.UpgradeTarget == brokenVersion || c.Version != goodVersion) {
			t.Fatalf("Pair-2 was touched by the broken rollout at %s: %+v", s.at.Format(time.TimeOnly), c)
		}
	}
	// The console says so: the deadline before its reboot, the agent of
	// the previous system after it (either line may be interleaved with
	// kernel messages on the serial port, so one of them is enough).
	if serial := ms[0].serial(); !strings.Contains(serial, "rebooting into the previous system") && !strings.Contains(serial, "the upgrade to "+brokenVersion+" failed and was rolled back") {
		t.Errorf("Pair-1's console shows neither the boot deadline nor the agent reporting the rollback")
	}
	if !strings.Contains(c1.UpgradeReason, "outpost-connector.service") {
		t.Errorf("the reason does not come from the boot deadline: %q", c1.UpgradeReason)
	}
}
