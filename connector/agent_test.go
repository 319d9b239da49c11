package connector_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/connector"
	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/cpclient"
	"github.com/outpost-appliance/outpost/firstboot"
	"github.com/outpost-appliance/outpost/firstboot/enroll"
	"github.com/outpost-appliance/outpost/firstboot/sysroot"
	"github.com/outpost-appliance/outpost/internal/cptest"
	"github.com/outpost-appliance/outpost/provkey"
)

const mac1 = "00:50:56:00:12:34"

// rig is the real control plane in-process on loopback, and an appliance
// root (under a temp dir) that first boot's real enrollment client has
// enrolled with it.
type rig struct {
	t     *testing.T
	admin *cpclient.Client
	root  sysroot.Root
	facts *facts
	name  string
}

// facts is the machine as the agent sees it; the MAC can be changed.
type facts struct {
	mu  sync.Mutex
	mac string
}

func (f *facts) setMAC(m string) { f.mu.Lock(); f.mac = m; f.mu.Unlock() }
func (f *facts) Fingerprint(string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	hw, _ := net.ParseMAC(f.mac)
	return enroll.Fingerprint(hw, "4c4c4544-0042-3010-8030-b7c04f4e3132")
}
func (f *facts) Addresses(string) []string { return []string{"192.0.2.10/24"} }
func (f *facts) Uptime() time.Duration     { return 42 * time.Second }

// newRig starts the control plane with its clock serverAhead of this one.
func newRig(t *testing.T, serverAhead time.Duration) *rig {
	t.Helper()
	return newRigWith(t, cptest.Options{Now: func() time.Time { return time.Now().Add(serverAhead) }, HeartbeatInterval: time.Second})
}

// newRigWith starts the control plane with opts.
func newRigWith(t *testing.T, opts cptest.Options) *rig {
	t.Helper()
	cp := cptest.Start(t, opts)
	r := &rig{t: t, facts: &facts{mac: mac1}, admin: cp.Admin}
	ctx := context.Background()
	if _, err := r.admin.CreateGroup(ctx, cpapi.GroupSpec{Name: "lab"}); err != nil {
		t.Fatal(err)
	}
	kt, err := r.admin.CreateKey(ctx, cpapi.KeySpec{Name: "Lab", Group: "lab", MaxUses: 1})
	if err != nil {
		t.Fatal(err)
	}
	key, err := provkey.Parse(kt.Text)
	if err != nil {
		t.Fatal(err)
	}
	fp, _ := r.facts.Fingerprint("eth0")
	id, err := enroll.NewIdentity("lab", fp, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := (&enroll.Client{Key: key, Attempts: 1}).Enroll(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if r.root, err = sysroot.New(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	st := &firstboot.State{Version: 1, Done: map[firstboot.StageName]time.Time{}}
	st.Interface = "eth0"
	st.Enroll = firstboot.Enrollment{Name: res.Name, Group: res.Group, ControlPlane: key.Host, Fingerprint: fp}
	if err := st.Save(r.root, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := r.root.WriteFile(appliance.KeyFile, id.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.root.WriteFile(appliance.CertFile, []byte(res.Certificate), 0o644); err != nil {
		t.Fatal(err)
	}
	r.name = res.Name
	return r
}

// run starts the agent; waits records every wait it asked for.
func (r *rig) run(now func() time.Time) (waits *waitLog, stop func()) {
	return r.runWith(now, nil)
}

// runWith starts the agent, set up further by with (if not nil).
func (r *rig) runWith(now func() time.Time, with func(*connector.Agent)) (waits *waitLog, stop func()) {
	waits = &waitLog{}
	a := &connector.Agent{
		Root: r.root, Version: "1.2.3", Facts: r.facts, Now: now, Log: slog.New(slog.DiscardHandler),
		Sleep: func(ctx context.Context, d time.Duration) error {
			waits.add(d)
			t := time.NewTimer(min(d, 30*time.Millisecond))
			defer t.Stop()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-t.C:
				return nil
			}
		},
	}
	if with != nil {
		with(a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	return waits, func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			r.t.Errorf("agent: %v", err)
		}
	}
}

type waitLog struct {
	mu sync.Mutex
	d  []time.Duration
}

func (w *waitLog) add(d time.Duration) { w.mu.Lock(); w.d = append(w.d, d); w.mu.Unlock() }
func (w *waitLog) last() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.d) == 0 {
		return 0
	}
	return w.d[len(w.d)-1]
}

func (r *rig) waitStatus(what string, ok func(connector.Status) bool) connector.Status {
	r.t.Helper()
	var st connector.Status
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var err error
		if st, err = connector.ReadStatus(r.root); err == nil && ok(st) {
			return st
		}
	}
	r.t.Fatalf("agent status never became %s; last %+v", what, st)
	return st
}

// TestHeartbeatBlockedRevoked drives the real agent against the real
// control plane: connected with the skew measured, the details on the
// control plane; blocked when the MAC changes (and slow to retry), healthy
// when it is restored; revoked for good.
func TestHeartbeatBlockedRevoked(t *testing.T) {
	r := newRig(t, 2*time.Second)
	waits, stop := r.run(nil)
	defer stop()
	st := r.waitStatus("connected", func(s connector.Status) bool { return s.State == connector.StateConnected && s.SkewKnown })
	if st.Skew > -1.5 || st.Skew < -2.5 {
		t.Errorf("skew %+.3fs, want about -2s (the control plane's clock is 2 s ahead)", st.Skew)
	}
	if st.Name != r.name || st.CertExpiry.IsZero() || st.ControlPlane == "" {
		t.Errorf("status %+v", st)
	}
	var text strings.Builder
	st.WriteText(&text, time.Now())
	for _, want := range []string{"Control connection state: connected", "Certificate will expire in 36", "Time skew: -2.0"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("status text lacks %q:\n%s", want, text.String())
		}
	}
	var c cpapi.Connector
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		c, _ = r.admin.Connector(context.Background(), r.name)
		if c.Version == "1.2.3" && len(c.Addresses) == 1 {
			break
		}
	}
	if c.Health != "healthy" || c.Version != "1.2.3" || len(c.Addresses) != 1 || c.Addresses[0] != "192.0.2.10/24" {
		t.Errorf("control plane sees %+v", c)
	}

	r.facts.setMAC("00:50:56:00:99:99")
	st = r.waitStatus("blocked", func(s connector.Status) bool { return s.State == connector.StateBlocked })
	if !strings.Contains(st.Reason, "mac changed from "+mac1) || !strings.Contains(st.Reason, "Restore the original hardware") {
		t.Errorf("blocked reason: %q", st.Reason)
	}
	time.Sleep(100 * time.Millisecond)
	if w := waits.last(); w < 4*time.Minute {
		t.Errorf("a blocked connector waits %s before trying again, want minutes", w)
	}
	r.facts.setMAC(mac1)
	r.waitStatus("connected again", func(s connector.Status) bool { return s.State == connector.StateConnected })

	if _, err := r.admin.RevokeConnector(context.Background(), r.name); err != nil {
		t.Fatal(err)
	}
	st = r.waitStatus("revoked", func(s connector.Status) bool { return s.State == connector.StateRevoked })
	if !strings.Contains(st.Reason, "revoked") {
		t.Errorf("revoked reason: %q", st.Reason)
	}
}

// TestRenewal: past two thirds of its life the certificate is renewed
// through the control plane, stored, and used for the next heartbeats.
func TestRenewal(t *testing.T) {
	r := newRig(t, 0)
	old, err := connector.LoadIdentity(r.root)
	if err != nil {
		t.Fatal(err)
	}
	later := func() time.Time { return time.Now().Add(250 * 24 * time.Hour) }
	_, stop := r.run(later)
	defer stop()
	r.waitStatus("renewed", func(s connector.Status) bool {
		return s.State == connector.StateConnected && s.CertExpiry.After(old.Leaf.NotAfter.Add(time.Second))
	})
	id, err := connector.LoadIdentity(r.root)
	if err != nil {
		t.Fatal(err)
	}
	if id.Leaf.SerialNumber.Cmp(old.Leaf.SerialNumber) == 0 {
		t.Fatal("the stored certificate is the old one")
	}
	if _, err := id.Leaf.Verify(x509.VerifyOptions{Roots: id.Roots, Intermediates: intermediates(t, r.root), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("renewed certificate does not verify: %v", err)
	}
	for _, f := range []string{appliance.CertFile + ".new", appliance.KeyFile + ".new"} {
		if _, err := r.root.Stat(f); err == nil {
			t.Errorf("%s left behind", f)
		}
	}
	if fi, err := r.root.Stat(appliance.KeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("renewed key mode: %v %v", fi, err)
	}
	// The control plane now knows the new certificate.
	waitFor(t, "a heartbeat on the new certificate", func() bool {
		c, err := r.admin.Connector(context.Background(), r.name)
		return err == nil && c.Serial == strings.ToLower(id.Leaf.SerialNumber.Text(16))
	})
}

func intermediates(t *testing.T, root sysroot.Root) *x509.CertPool {
	b, err := root.ReadFile(appliance.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	for blk, rest := pem.Decode(b); blk != nil; blk, rest = pem.Decode(rest) {
		if c, err := x509.ParseCertificate(blk.Bytes); err == nil {
			pool.AddCert(c)
		}
	}
	return pool
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestLoadIdentityAfterCrash: a renewal killed between its two renames
// leaves a new key beside the old certificate; the matching pair is used.
func TestLoadIdentityAfterCrash(t *testing.T) {
	r := newRig(t, 0)
	crt, _ := r.root.ReadFile(appliance.CertFile)
	key, _ := r.root.ReadFile(appliance.KeyFile)
	// A "new" key that matches nothing, renamed into place; the old
	// certificate and key stay as .new copies of the pair.
	other, _ := enroll.NewIdentity("x", "mac=00:50:56:00:00:01;uuid=unknown", nil)
	r.root.WriteFile(appliance.KeyFile, other.KeyPEM, 0o600)
	r.root.WriteFile(appliance.KeyFile+".new", key, 0o600)
	r.root.WriteFile(appliance.CertFile+".new", crt, 0o644)
	id, err := connector.LoadIdentity(r.root)
	if err != nil {
		t.Fatalf("no usable pair found: %v", err)
	}
	if id.Leaf == nil || id.Leaf.Subject.CommonName == "" {
		t.Errorf("identity %+v", id)
	}
	empty, _ := sysroot.New(t.TempDir())
	if _, err := connector.LoadIdentity(empty); !errors.Is(err, connector.ErrNotEnrolled) {
		t.Errorf("an appliance without certificate: %v, want ErrNotEnrolled", err)
	}
}
