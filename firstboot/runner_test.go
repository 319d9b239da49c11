package firstboot

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beevik/ntp"

	"github.com/outpost-appliance/outpost/firstboot/enroll/enrolltest"
	"github.com/outpost-appliance/outpost/firstboot/netconf"
	"github.com/outpost-appliance/outpost/firstboot/sysroot"
	"github.com/outpost-appliance/outpost/provkey"
)

func newFakeCP(t testing.TB, caName string, maxUses int) *enrolltest.Server {
	return enrolltest.New(t, enrolltest.Options{CAName: caName, MaxUses: maxUses})
}

func cpKey(t testing.TB, cp *enrolltest.Server, pin provkey.Pin) provkey.Key {
	return enrolltest.Key(t, strings.TrimPrefix(cp.HTTP.URL, "https://"), pin)
}

func mkCA(t testing.TB, cn string) (*x509.Certificate, any) { return enrolltest.CA(t, cn) }

// ---- the rest of the machine ----

type fakeNet struct {
	mu      sync.Mutex
	applied []string
	noDHCP  bool
	up      netip.Prefix
}

func (f *fakeNet) Primary(name string) (*net.Interface, error) {
	return &net.Interface{Name: "eth0", HardwareAddr: net.HardwareAddr{0x00, 0x50, 0x56, 0x00, 0x12, 0x34}}, nil
}

func (f *fakeNet) DHCP(ctx context.Context, ifname string, timeout time.Duration) (*netconf.Lease, error) {
	if f.noDHCP {
		return nil, fmt.Errorf("%w on %s within %s", netconf.ErrNoDHCP, ifname, timeout)
	}
	return &netconf.Lease{Address: netip.MustParsePrefix("192.0.2.50/24"), Router: netip.MustParseAddr("192.0.2.1"),
		DNS: []netip.Addr{netip.MustParseAddr("192.0.2.53")}, Search: []string{"corp.example"}, NTP: []string{"192.0.2.123"}}, nil
}

func (f *fakeNet) Apply(ifname string, addr netip.Prefix, gw netip.Addr, mtu int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = append(f.applied, fmt.Sprintf("%s %s via %s", ifname, addr, gw))
	f.up = addr
	return nil
}

func (f *fakeNet) Has(ifname string, addr netip.Prefix) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.up == addr
}

// reboot forgets the addresses, as a power cut does.
func (f *fakeNet) reboot() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.up = netip.Prefix{}
}

type rig struct {
	dir  string
	env  *Env
	cp   *enrolltest.Server
	net  *fakeNet
	skew time.Duration // how far the appliance's clock is behind
}

func newRig(t testing.TB, key provkey.Key, cp *enrolltest.Server) *rig {
	t.Helper()
	dir := t.TempDir()
	r := &rig{dir: dir, cp: cp, net: &fakeNet{}}
	root, _ := sysroot.New(dir)
	r.write(t, "etc/outpost/defaults", "outpost.hostname=conn-a\n")
	r.write(t, "sys/class/dmi/id/product_uuid", "4C4C4544-0042-3010-8030-B7C04F4E3132\n")
	os.MkdirAll(filepath.Join(dir, "run/systemd/resolve"), 0o755)
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	os.Symlink("/run/systemd/resolve/stub-resolv.conf", filepath.Join(dir, "etc/resolv.conf"))
	if key.Host != "" {
		r.write(t, "opt/outpost/var/provision_key", key.Reveal()+"\n")
	}
	r.env = &Env{
		Root: root,
		Net:  r.net,
		Now:  func() time.Time { return time.Now().Add(-r.skew) },
		NTPQuery: func(host string, opt ntp.QueryOptions) (*ntp.Response, error) {
			now := time.Now()
			return &ntp.Response{Time: now, ReferenceTime: now, RTT: time.Millisecond, Stratum: 2, Version: 4}, nil
		},
		Facts: func() (Facts, error) {
			return Facts{CPUs: 2, MemBytes: 4 * gib, DiskBytes: 8 * gib, Vendor: "VMware, Inc."}, nil
		},
		Sleep:          func(context.Context, time.Duration) error { return nil },
		EnrollAttempts: 1,
	}
	return r
}

func (r *rig) write(t testing.TB, name, content string) {
	p := filepath.Join(r.dir, name)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) run(stages ...Stage) (*State, error) {
	return (&Runner{Env: r.env, Stages: stages}).Run(context.Background())
}

func (r *rig) status(t *testing.T) Status {
	b, err := os.ReadFile(filepath.Join(r.dir, "run/outpost/status.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s Status
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

var errKilled = errors.New("killed")

// killAfter runs a stage and then "dies" before its completion is recorded.
type killAfter struct{ Stage }

func (k killAfter) Run(ctx context.Context, st *State) error {
	if err := k.Stage.Run(ctx, st); err != nil {
		return err
	}
	return errKilled
}

func TestEnrollsAndConfigures(t *testing.T) {
	cp := newFakeCP(t, "outpost root", 2)
	r := newRig(t, cpKey(t, cp, provkey.PinOf(cp.CA)), cp)
	st, err := r.run()
	if err != nil {
		t.Fatal(err)
	}
	if st.Enroll.Name != "Melbourne-1" || cp.Uses() != 1 {
		t.Fatalf("name %q, uses %d", st.Enroll.Name, cp.Uses())
	}
	s := r.status(t)
	if s.State != StateEnrolled || s.Name != "Melbourne-1" || s.Group != "Melbourne" || s.CertExpiry == nil || s.Address != "192.0.2.50/24" {
		t.Errorf("status = %+v", s)
	}
	files := map[string]string{
		"run/systemd/resolve/stub-resolv.conf":   "nameserver 192.0.2.53\nsearch corp.example\n",
		"etc/chrony/chrony.conf":                 "server 192.0.2.123 iburst\n",
		"etc/systemd/network/10-outpost.network": "MACAddress=00:50:56:00:12:34\n",
		"etc/hostname":                           "conn-a\n",
		"etc/issue.d/outpost.issue":              "outpost connector Melbourne-1 (group Melbourne): enrolled with 127.0.0.1:",
		"var/lib/outpost/tls/connector.crt":      "BEGIN CERTIFICATE",
	}
	for name, want := range files {
		b, err := os.ReadFile(filepath.Join(r.dir, name))
		if err != nil || !strings.Contains(string(b), want) {
			t.Errorf("%s = %q, %v; want it to contain %q", name, b, err, want)
		}
	}
	fi, err := os.Stat(filepath.Join(r.dir, "var/lib/outpost/tls/connector.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("private key: %v %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(r.dir, "opt/outpost/var/provision_key")); !os.IsNotExist(err) {
		t.Errorf("provisioning key file still present after enrollment (%v)", err)
	}
	state, _ := os.ReadFile(filepath.Join(r.dir, "var/lib/outpost/firstboot.json"))
	k := cpKey(t, cp, provkey.PinOf(cp.CA))
	if strings.Contains(string(state), strings.SplitN(k.Reveal(), "|", 3)[2][:20]) || strings.Contains(string(state), "PRIVATE KEY") {
		t.Error("state file holds a secret")
	}
	// Again: nothing is sent, the state stays enrolled, the network (now
	// networkd's) is left alone.
	if _, err := r.run(); err != nil {
		t.Fatal(err)
	}
	if cp.Requests() != 1 {
		t.Errorf("requests after a second run = %d, want 1", cp.Requests())
	}
}

func TestKilledAtEveryStageEnrollsOnce(t *testing.T) {
	names := []string{"config", "network", "dns", "time", "preflight", "enroll", "report"}
	for i, name := range names {
		t.Run(name, func(t *testing.T) {
			cp := newFakeCP(t, "outpost root", 5)
			r := newRig(t, cpKey(t, cp, provkey.PinOf(cp.CA)), cp)
			stages := Stages(r.env)
			stages[i] = killAfter{stages[i]}
			if _, err := r.run(stages...); !errors.Is(err, errKilled) {
				t.Fatalf("first run: %v", err)
			}
			applied := len(r.net.applied)
			r.net.reboot()
			if _, err := r.run(); err != nil {
				t.Fatalf("resumed run: %v", err)
			}
			if cp.Uses() != 1 || cp.Distinct() != 1 {
				t.Errorf("uses = %d, distinct CSRs = %d; want exactly one enrollment", cp.Uses(), cp.Distinct())
			}
			// Killed before enrollment completed: the resumed run after
			// the reboot brought the network up again.
			if i < 5 && len(r.net.applied) != applied+1 {
				t.Errorf("network applied %d times after the reboot, want once", len(r.net.applied)-applied)
			}
			if s := r.status(t); s.State != StateEnrolled || s.Name != "Melbourne-1" {
				t.Errorf("status = %s %s", s.State, s.Name)
			}
		})
	}
}

func TestLostResponseRetriedWithSameRequest(t *testing.T) {
	cp := enrolltest.New(t, enrolltest.Options{MaxUses: 1, DropFirst: true})
	r := newRig(t, cpKey(t, cp, provkey.PinOf(cp.CA)), cp)
	if _, err := r.run(); err == nil {
		t.Fatal("first run: want the lost response to fail the attempt")
	}
	if s := r.status(t); s.State != StateFailed || s.Stage != "enroll" {
		t.Errorf("status after lost response = %s at %s", s.State, s.Stage)
	}
	st, err := r.run()
	if err != nil {
		t.Fatalf("second run (a key with max uses 1): %v", err)
	}
	if st.Enroll.Name != "Melbourne-1" || cp.Uses() != 1 || cp.Requests() != 2 {
		t.Errorf("name %q uses %d requests %d", st.Enroll.Name, cp.Uses(), cp.Requests())
	}
}

func TestInterceptionBlocksEnrollment(t *testing.T) {
	cp := newFakeCP(t, "Corp SSL Inspection CA", 5)
	realCA, _ := mkCA(t, "outpost root")
	r := newRig(t, cpKey(t, cp, provkey.PinOf(realCA)), cp)
	_, err := r.run()
	var pe *PreflightError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v, want a preflight failure", err)
	}
	want := `SSL inspection detected: the certificate for 127.0.0.1 is issued by "Corp SSL Inspection CA"; bypass SSL inspection for connector traffic`
	if !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v", err)
	}
	if cp.Requests() != 0 {
		t.Errorf("the key was sent to the intercepting server")
	}
	banner, _ := os.ReadFile(filepath.Join(r.dir, "etc/issue.d/outpost.issue"))
	if !strings.Contains(string(banner), "FAILED at preflight") || !strings.Contains(string(banner), want) {
		t.Errorf("banner:\n%s", banner)
	}
	if _, err := os.Stat(filepath.Join(r.dir, "opt/outpost/var/provision_key")); err != nil {
		t.Error("key file removed although not enrolled")
	}
}

func TestExhaustedKeyReason(t *testing.T) {
	cp := newFakeCP(t, "outpost root", 0)
	r := newRig(t, cpKey(t, cp, provkey.PinOf(cp.CA)), cp)
	_, err := r.run()
	want := "enrollment refused: key_exhausted — Melbourne has been used 0 of 0 times; raise its maximum uses or use another key"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v", err)
	}
	if s := r.status(t); s.State != StateFailed || s.LastError != want {
		t.Errorf("status = %s %q", s.State, s.LastError)
	}
}

func TestClockYearsOffCorrectedBeforeTLS(t *testing.T) {
	cp := newFakeCP(t, "outpost root", 1)
	r := newRig(t, cpKey(t, cp, provkey.PinOf(cp.CA)), cp)
	r.skew = 3 * 365 * 24 * time.Hour
	st, err := r.run()
	if err != nil {
		t.Fatal(err)
	}
	if st.Time == nil || !st.Time.Stepped || st.ClockCorrection < r.skew-time.Minute {
		t.Errorf("time = %+v, correction %v", st.Time, st.ClockCorrection)
	}
	if !strings.HasPrefix(r.status(t).TimeSkew, "+26280h") {
		t.Errorf("time skew shown as %q", r.status(t).TimeSkew)
	}
}

func TestNTPUnreachableIsReportedNotFatal(t *testing.T) {
	cp := newFakeCP(t, "outpost root", 1)
	r := newRig(t, cpKey(t, cp, provkey.PinOf(cp.CA)), cp)
	r.env.NTPQuery = func(host string, _ ntp.QueryOptions) (*ntp.Response, error) {
		return nil, errors.New("read udp: i/o timeout")
	}
	st, err := r.run()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.TimeError, "no NTP server answered (192.0.2.123: read udp: i/o timeout); the clock reads") {
		t.Errorf("time error = %q", st.TimeError)
	}
}

func TestKeyWrittenLaterIsPickedUp(t *testing.T) {
	cp := newFakeCP(t, "outpost root", 1)
	r := newRig(t, provkey.Key{}, cp)
	_, err := r.run()
	if !errors.Is(err, ErrNoKey) {
		t.Fatalf("err = %v, want ErrNoKey", err)
	}
	if s := r.status(t); s.State != StateWaitingKey {
		t.Errorf("state = %s", s.State)
	}
	r.env.KeyWait = 10 * time.Second
	k := cpKey(t, cp, provkey.PinOf(cp.CA))
	go func() {
		time.Sleep(700 * time.Millisecond)
		p := filepath.Join(r.dir, "opt/outpost/var/provision_key")
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(k.Reveal()+"\n"), 0o600)
	}()
	start := time.Now()
	if _, err := r.run(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("key picked up after %v", d)
	}
	if len(r.net.applied) != 1 {
		t.Errorf("network applied %d times in one boot, want once: %v", len(r.net.applied), r.net.applied)
	}
}

func TestBadConfigChangesNothing(t *testing.T) {
	cp := newFakeCP(t, "outpost root", 1)
	r := newRig(t, cpKey(t, cp, provkey.PinOf(cp.CA)), cp)
	r.write(t, "etc/outpost/defaults", "outpost.hostname=my connector\noutpost.ipv4.mode=Static\noutpost.ipv4.address=10.0.0.5/24\noutpost.ipv4.gateway=10.1.0.1\n")
	_, err := r.run()
	if err == nil || !strings.Contains(err.Error(), "outpost.hostname") || !strings.Contains(err.Error(), "outpost.ipv4.gateway") {
		t.Fatalf("err = %v", err)
	}
	if len(r.net.applied) != 0 {
		t.Errorf("network changed: %v", r.net.applied)
	}
	if _, err := os.Stat(filepath.Join(r.dir, "etc/hostname")); !os.IsNotExist(err) {
		t.Error("hostname written despite invalid config")
	}
}

func TestNoDHCPMessage(t *testing.T) {
	cp := newFakeCP(t, "outpost root", 1)
	r := newRig(t, cpKey(t, cp, provkey.PinOf(cp.CA)), cp)
	r.net.noDHCP = true
	_, err := r.run()
	if !errors.Is(err, netconf.ErrNoDHCP) {
		t.Fatalf("err = %v", err)
	}
	if s := r.status(t); s.State != StateFailed || s.Stage != "network" {
		t.Errorf("status = %s at %s", s.State, s.Stage)
	}
}
