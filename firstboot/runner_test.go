package firstboot

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beevik/ntp"

	"github.com/outpost-appliance/outpost/firstboot/netconf"
	"github.com/outpost-appliance/outpost/firstboot/sysroot"
	"github.com/outpost-appliance/outpost/provkey"
)

// ---- a control plane double that keeps the enrollment contract: the same
// CSR public key again returns the same connector and consumes no use. ----

type fakeCP struct {
	mu       sync.Mutex
	root     *x509.Certificate
	rootKey  *ecdsa.PrivateKey
	byCSR    map[string]string // CSR PEM → name
	uses     int
	maxUses  int
	requests int
	// dropFirst closes the connection after counting the first
	// enrollment, as if the response were lost.
	dropFirst bool
	srv       *httptest.Server
}

func mkCA(t *testing.T, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

func newFakeCP(t *testing.T, caName string, maxUses int) *fakeCP {
	cp := &fakeCP{byCSR: map[string]string{}, maxUses: maxUses}
	cp.root, cp.rootKey = mkCA(t, caName)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, cp.root, &key.PublicKey, cp.rootKey)
	cp.srv = httptest.NewUnstartedServer(http.HandlerFunc(cp.serve))
	cp.srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der, cp.root.Raw}, PrivateKey: key}}}
	cp.srv.StartTLS()
	t.Cleanup(cp.srv.Close)
	return cp
}

func (cp *fakeCP) key(t *testing.T, pin provkey.Pin) provkey.Key {
	k, err := provkey.Generate(strings.TrimPrefix(cp.srv.URL, "https://"), pin, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (cp *fakeCP) serve(w http.ResponseWriter, r *http.Request) {
	var req map[string]string
	json.NewDecoder(r.Body).Decode(&req)
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.requests++
	name, seen := cp.byCSR[req["csr"]]
	if !seen {
		if cp.uses >= cp.maxUses {
			w.WriteHeader(http.StatusConflict)
			fmt.Fprintf(w, `{"error":"key_exhausted","message":"Melbourne has been used %d of %d times; raise its maximum uses or use another key"}`, cp.uses, cp.maxUses)
			return
		}
		cp.uses++
		name = fmt.Sprintf("Melbourne-%d", cp.uses)
		cp.byCSR[req["csr"]] = name
		if cp.dropFirst && cp.uses == 1 {
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
	}
	blk, _ := pem.Decode([]byte(req["csr"]))
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		w.WriteHeader(400)
		fmt.Fprint(w, `{"error":"bad_csr","message":"not a CSR"}`)
		return
	}
	der, _ := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(365 * 24 * time.Hour)}, cp.root, csr.PublicKey, cp.rootKey)
	chain := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	json.NewEncoder(w).Encode(map[string]string{"name": name, "group": "Melbourne", "certificate": string(chain) + string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cp.root.Raw}))})
}

// ---- the rest of the machine ----

type fakeNet struct {
	mu      sync.Mutex
	applied []string
	noDHCP  bool
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
	return nil
}

type rig struct {
	dir  string
	env  *Env
	cp   *fakeCP
	net  *fakeNet
	skew time.Duration // how far the appliance's clock is behind
}

func newRig(t *testing.T, key provkey.Key, cp *fakeCP) *rig {
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

func (r *rig) write(t *testing.T, name, content string) {
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
	r := newRig(t, cp.key(t, provkey.PinOf(cp.root)), cp)
	st, err := r.run()
	if err != nil {
		t.Fatal(err)
	}
	if st.Enroll.Name != "Melbourne-1" || cp.uses != 1 {
		t.Fatalf("name %q, uses %d", st.Enroll.Name, cp.uses)
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
		"etc/outpost/tls/connector.crt":          "BEGIN CERTIFICATE",
	}
	for name, want := range files {
		b, err := os.ReadFile(filepath.Join(r.dir, name))
		if err != nil || !strings.Contains(string(b), want) {
			t.Errorf("%s = %q, %v; want it to contain %q", name, b, err, want)
		}
	}
	fi, err := os.Stat(filepath.Join(r.dir, "etc/outpost/tls/connector.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("private key: %v %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(r.dir, "opt/outpost/var/provision_key")); !os.IsNotExist(err) {
		t.Errorf("provisioning key file still present after enrollment (%v)", err)
	}
	state, _ := os.ReadFile(filepath.Join(r.dir, "var/lib/outpost/firstboot.json"))
	k := cp.key(t, provkey.PinOf(cp.root))
	if strings.Contains(string(state), strings.SplitN(k.Reveal(), "|", 3)[2][:20]) || strings.Contains(string(state), "PRIVATE KEY") {
		t.Error("state file holds a secret")
	}
	// Again: nothing is sent, the state stays enrolled.
	if _, err := r.run(); err != nil {
		t.Fatal(err)
	}
	if cp.requests != 1 {
		t.Errorf("requests after a second run = %d, want 1", cp.requests)
	}
}

func TestKilledAtEveryStageEnrollsOnce(t *testing.T) {
	names := []string{"config", "network", "dns", "time", "preflight", "enroll", "report"}
	for i, name := range names {
		t.Run(name, func(t *testing.T) {
			cp := newFakeCP(t, "outpost root", 5)
			r := newRig(t, cp.key(t, provkey.PinOf(cp.root)), cp)
			stages := Stages(r.env)
			stages[i] = killAfter{stages[i]}
			if _, err := r.run(stages...); !errors.Is(err, errKilled) {
				t.Fatalf("first run: %v", err)
			}
			if _, err := r.run(); err != nil {
				t.Fatalf("resumed run: %v", err)
			}
			if cp.uses != 1 || len(cp.byCSR) != 1 {
				t.Errorf("uses = %d, distinct CSRs = %d; want exactly one enrollment", cp.uses, len(cp.byCSR))
			}
			if s := r.status(t); s.State != StateEnrolled || s.Name != "Melbourne-1" {
				t.Errorf("status = %s %s", s.State, s.Name)
			}
		})
	}
}

func TestLostResponseRetriedWithSameRequest(t *testing.T) {
	cp := newFakeCP(t, "outpost root", 1)
	cp.dropFirst = true
	r := newRig(t, cp.key(t, provkey.PinOf(cp.root)), cp)
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
	if st.Enroll.Name != "Melbourne-1" || cp.uses != 1 || cp.requests != 2 {
		t.Errorf("name %q uses %d requests %d", st.Enroll.Name, cp.uses, cp.requests)
	}
}

func TestInterceptionBlocksEnrollment(t *testing.T) {
	cp := newFakeCP(t, "Corp SSL Inspection CA", 5)
	realCA, _ := mkCA(t, "outpost root")
	r := newRig(t, cp.key(t, provkey.PinOf(realCA)), cp)
	_, err := r.run()
	var pe *PreflightError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v, want a preflight failure", err)
	}
	want := `SSL inspection detected: the certificate for 127.0.0.1 is issued by "Corp SSL Inspection CA"; bypass SSL inspection for connector traffic`
	if !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v", err)
	}
	if cp.requests != 0 {
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
	r := newRig(t, cp.key(t, provkey.PinOf(cp.root)), cp)
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
	r := newRig(t, cp.key(t, provkey.PinOf(cp.root)), cp)
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
	r := newRig(t, cp.key(t, provkey.PinOf(cp.root)), cp)
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
	k := cp.key(t, provkey.PinOf(cp.root))
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
}

func TestBadConfigChangesNothing(t *testing.T) {
	cp := newFakeCP(t, "outpost root", 1)
	r := newRig(t, cp.key(t, provkey.PinOf(cp.root)), cp)
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
	r := newRig(t, cp.key(t, provkey.PinOf(cp.root)), cp)
	r.net.noDHCP = true
	_, err := r.run()
	if !errors.Is(err, netconf.ErrNoDHCP) {
		t.Fatalf("err = %v", err)
	}
	if s := r.status(t); s.State != StateFailed || s.Stage != "network" {
		t.Errorf("status = %s at %s", s.State, s.Stage)
	}
}
