package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/firstboot"
	"github.com/outpost-appliance/outpost/firstboot/enroll/enrolltest"
	"github.com/outpost-appliance/outpost/internal/nstest"
	"github.com/outpost-appliance/outpost/provkey"
)

// These tests run the real outpost-firstboot binary in a network namespace
// the test creates, against dnsmasq (DHCP and DNS) and chronyd (NTP) in a
// second namespace joined by a veth pair, and a control plane listening in
// that second namespace.

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "outpost-firstboot-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "outpost-firstboot")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build outpost-firstboot: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	srvIP   = "10.77.0.1"
	cliMAC  = "00:50:56:00:00:42"
	cpName  = "cp.corp.test"
	cpPort  = "8443"
	nsLimit = 15 // interface name length
)

type nsRig struct {
	*nstest.Rig
	root string
}

func newNSRig(t testing.TB) *nsRig {
	r := &nsRig{Rig: nstest.New(t, "ob", srvIP, "dnsmasq", "chronyd")}
	r.root = filepath.Join(r.Dir, "root")
	nstest.Sh(t, "ip", "-n", r.Cli, "link", "set", r.Cli, "address", cliMAC)
	// The appliance's root: a memory size for preflight and the usual
	// absolute resolv.conf link.
	os.MkdirAll(filepath.Join(r.root, "proc"), 0o755)
	os.WriteFile(filepath.Join(r.root, "proc/meminfo"), []byte("MemTotal:        4028116 kB\n"), 0o644)
	os.MkdirAll(filepath.Join(r.root, "etc"), 0o755)
	os.Symlink("/run/systemd/resolve/stub-resolv.conf", filepath.Join(r.root, "etc/resolv.conf"))
	return r
}

func (r *nsRig) dnsmasq(t testing.TB, dhcp bool) {
	r.Dnsmasq(t, nstest.DNS{DHCP: dhcp, Search: "corp.test", Hosts: []string{cpName + "," + srvIP, "intranet.corp.test,10.77.0.5"}})
}

// controlPlane serves enrollment on srvIP:8443 inside the server namespace.
func (r *nsRig) controlPlane(t testing.TB, maxUses int, delay ...time.Duration) (*enrolltest.Server, provkey.Key) {
	t.Helper()
	l := nstest.ListenIn(t, r.Srv, net.JoinHostPort(srvIP, cpPort))
	o := enrolltest.Options{MaxUses: maxUses, DNSNames: []string{cpName}, Listener: l}
	if len(delay) > 0 {
		o.Delay = delay[0]
	}
	cp := enrolltest.New(t, o)
	return cp, enrolltest.Key(t, cpName+":"+cpPort, provkey.PinOf(cp.CA))
}

func (r *nsRig) writeKey(t testing.TB, k provkey.Key) {
	p := filepath.Join(r.root, "opt/outpost/var/provision_key")
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(k.Reveal()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

type result struct {
	code           int
	stdout, stderr string
	took           time.Duration
}

func (r *nsRig) firstboot(t testing.TB, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", r.Cli, binary, "--root", r.root, "--interface", r.Cli}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	res := result{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		res.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return res
}

func (r *nsRig) status(t testing.TB) firstboot.Status {
	t.Helper()
	out, err := exec.Command(binary, "status", "--json", "--root", r.root).Output()
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && (ee.ExitCode() == exitFailure || ee.ExitCode() == exitNotYet)) {
		// 1 and 3 are states (failed, not yet), not errors.
		t.Fatalf("status: %v", err)
	}
	var s firstboot.Status
	if err := json.Unmarshal(out, &s); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return s
}

func (r *nsRig) ip(t testing.TB, args ...string) string {
	out, err := exec.Command("ip", append([]string{"-n", r.Cli}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func TestNamespaceDHCPNTPEnroll(t *testing.T) {
	r := newNSRig(t)
	r.dnsmasq(t, true)
	r.Chronyd(t)
	cp, key := r.controlPlane(t, 2)
	r.writeKey(t, key)
	os.WriteFile(filepath.Join(r.Dir, "extra.conf"), []byte("outpost.dns.check_host=intranet.corp.test\n"), 0o644)

	res := r.firstboot(t, "--dhcp-timeout", "10s", "--config", filepath.Join(r.Dir, "extra.conf"))
	if res.code != 0 {
		t.Fatalf("exit %d\n%s", res.code, res.stderr)
	}
	t.Logf("first boot on the namespace rig took %v", res.took)
	if !strings.Contains(res.stdout, "enrolled as Melbourne-1 (group Melbourne) with "+cpName+":"+cpPort) {
		t.Errorf("stdout = %q", res.stdout)
	}
	if cp.Uses() != 1 {
		t.Errorf("uses = %d", cp.Uses())
	}
	s := r.status(t)
	if s.State != firstboot.StateEnrolled || s.TimeServer != srvIP || s.TimeSkew == "" || !strings.HasPrefix(s.Address, "10.77.0.") {
		t.Errorf("status = %+v", s)
	}
	for _, c := range s.Preflight {
		if c.Status == firstboot.Fail {
			t.Errorf("preflight %s failed: %s", c.Name, c.Detail)
		}
	}
	if addr := r.ip(t, "-4", "addr", "show", r.Cli); !strings.Contains(addr, "inet "+s.Address) {
		t.Errorf("lease not applied:\n%s", addr)
	}
	if route := r.ip(t, "route"); !strings.Contains(route, "default via "+srvIP) {
		t.Errorf("no default route:\n%s", route)
	}
	resolv, _ := os.ReadFile(filepath.Join(r.root, "run/systemd/resolve/stub-resolv.conf"))
	if string(resolv) != "# Written by outpost-firstboot.\nnameserver "+srvIP+"\nsearch corp.test\n" {
		t.Errorf("resolv.conf (option 119 search list) = %q", resolv)
	}
	chrony, _ := os.ReadFile(filepath.Join(r.root, "etc/chrony/chrony.conf"))
	if !strings.Contains(string(chrony), "server "+srvIP+" iburst") {
		t.Errorf("chrony.conf (option 42) = %q", chrony)
	}

	// Again: nothing sent, still enrolled.
	if res := r.firstboot(t); res.code != 0 || cp.Requests() != 1 {
		t.Errorf("second run: exit %d, requests %d\n%s", res.code, cp.Requests(), res.stderr)
	}
}

func TestNamespaceNoDHCPServer(t *testing.T) {
	r := newNSRig(t)
	res := r.firstboot(t, "--dhcp-timeout", "3s")
	want := "no DHCP server answered on " + r.Cli + " within 3s"
	if res.code != 1 || !strings.Contains(res.stderr, want) {
		t.Fatalf("exit %d, want 1 and %q in:\n%s", res.code, want, res.stderr)
	}
	if res.took > 10*time.Second {
		t.Errorf("gave up after %v", res.took)
	}
	if s := r.status(t); s.State != firstboot.StateFailed || s.Stage != "network" || !strings.Contains(s.LastError, want) {
		t.Errorf("status = %+v", s)
	}
}

func TestNamespaceStaticNoNTP(t *testing.T) {
	r := newNSRig(t)
	r.dnsmasq(t, false) // DNS only
	cp, key := r.controlPlane(t, 1)
	conf := filepath.Join(r.Dir, "static.conf")
	os.WriteFile(conf, []byte(strings.Join([]string{
		"outpost.ipv4.mode=Static", "outpost.ipv4.address=10.77.0.10/24", "outpost.ipv4.gateway=" + srvIP,
		"outpost.dns.servers=" + srvIP, "outpost.dns.search=corp.test", "outpost.ntp.servers=10.77.0.123",
		"outpost.hostname=conn-b", "outpost.mtu=1400", "outpost.provision_key=" + key.Reveal(), ""}, "\n")), 0o600)
	res := r.firstboot(t, "--config", conf)
	if res.code != 0 {
		t.Fatalf("exit %d\n%s", res.code, res.stderr)
	}
	if cp.Uses() != 1 {
		t.Errorf("uses = %d", cp.Uses())
	}
	if addr := r.ip(t, "-4", "addr", "show", r.Cli); !strings.Contains(addr, "inet 10.77.0.10/24") {
		t.Errorf("static address not applied:\n%s", addr)
	}
	if link := r.ip(t, "link", "show", r.Cli); !strings.Contains(link, "mtu 1400") {
		t.Errorf("MTU not applied:\n%s", link)
	}
	nw, _ := os.ReadFile(filepath.Join(r.root, "etc/systemd/network/10-outpost.network"))
	for _, want := range []string{"MACAddress=" + cliMAC, "MTUBytes=1400", "Address=10.77.0.10/24", "Gateway=" + srvIP, "DNS=" + srvIP} {
		if !bytes.Contains(nw, []byte(want)) {
			t.Errorf("networkd file lacks %q:\n%s", want, nw)
		}
	}
	s := r.status(t)
	if !strings.Contains(s.TimeError, "no NTP server answered (10.77.0.123:") || !strings.Contains(s.TimeError, "certificate checks may fail") {
		t.Errorf("NTP unreachable not reported: %q", s.TimeError)
	}
}

// TestNamespaceKilledDuringEnrollment kills outpost-firstboot with SIGKILL
// after the control plane has counted the use but before the answer
// arrives; the next run sends the same CSR and nonce and the key is used once.
func TestNamespaceKilledDuringEnrollment(t *testing.T) {
	r := newNSRig(t)
	r.dnsmasq(t, true)
	cp, key := r.controlPlane(t, 1, 2*time.Second)
	r.writeKey(t, key)
	cmd := exec.Command("ip", "netns", "exec", r.Cli, binary, "--root", r.root, "--interface", r.Cli)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// `ip netns exec` execs the program: this PID is outpost-firstboot's.
	nstest.WaitFor(t, "the enrollment request", func() bool { return cp.Requests() == 1 })
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if s := r.status(t); s.State == firstboot.StateEnrolled || s.Stage != "enroll" {
		t.Fatalf("after the kill: state %s at %s", s.State, s.Stage)
	}
	res := r.firstboot(t)
	if res.code != 0 {
		t.Fatalf("resumed run: exit %d\n%s", res.code, res.stderr)
	}
	if cp.Uses() != 1 || cp.Distinct() != 1 || cp.Requests() != 2 {
		t.Errorf("uses %d, distinct CSRs %d, requests %d; want 1, 1, 2", cp.Uses(), cp.Distinct(), cp.Requests())
	}
	if n := cp.Nonces(); len(n) != 2 || n[0] != n[1] {
		t.Errorf("nonces = %v, want the same nonce twice", n)
	}
}

// outpostBinary builds this tree's cmd/outpost (or takes $OUTPOST_BIN) and
// skips the test when the binary has no `server` command, which only an
// OUTPOST_BIN older than the control plane lacks.
func outpostBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("OUTPOST_BIN")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "outpost")
		build := exec.Command("go", "build", "-o", bin, "../outpost")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build cmd/outpost: %v\n%s", err, out)
		}
	}
	if err := exec.Command(bin, "server", "--help").Run(); err != nil {
		// Not a missing tool: OUTPOST_BIN names an outpost from before the
		// control plane.
		t.Skipf("%s has no `server` command; unset OUTPOST_BIN to build this tree's, or point it at an outpost that has one", bin)
	}
	return bin
}

// realServer starts the real `outpost server` in the server namespace and
// returns a function running admin commands against it (their stdout) and
// the control plane's address.
func (r *nsRig) realServer(t *testing.T) (inSrv func(args ...string) string, hostport string) {
	t.Helper()
	return r.RealServer(t, outpostBinary(t), cpPort)
}

// TestNamespaceKilledAtEveryPoint kills the real outpost-firstboot with
// SIGKILL at every step of a run (the start and end of each stage, and
// inside enrollment after the key pair is saved, after the control plane
// answered and after the certificate is stored), runs it again, and asks
// the real control plane: the key was used once and one connector exists,
// named after the key; the appliance is enrolled and its key file is gone.
func TestNamespaceKilledAtEveryPoint(t *testing.T) {
	r := newNSRig(t)
	r.dnsmasq(t, true)
	r.Chronyd(t)
	inSrv, _ := r.realServer(t)
	inSrv("groups", "create", "lab")
	points := []string{"enroll:identity-saved", "enroll:response", "enroll:cert-stored"}
	for _, stage := range []string{"config", "network", "dns", "time", "preflight", "enroll", "report"} {
		points = append(points, stage+":start", stage+":done")
	}
	base := r.root
	for i, point := range points {
		name := fmt.Sprintf("Crash%d", i)
		key, err := provkey.Parse(inSrv("keys", "create", "--name", name, "--group", "lab", "--max-uses", "1"))
		if err != nil {
			t.Fatal(err)
		}
		r2 := *r
		r2.root = filepath.Join(r.Dir, "crashroot", name)
		if err := os.CopyFS(r2.root, os.DirFS(base)); err != nil {
			t.Fatal(err)
		}
		r2.writeKey(t, key)
		t.Setenv("OUTPOST_FIRSTBOOT_CRASH_AT", point)
		if res := r2.firstboot(t, "--dhcp-timeout", "10s", "--enroll-attempts", "3"); res.code != -1 {
			t.Fatalf("%s: the run was not killed there (exit %d)\n%s", point, res.code, res.stderr)
		}
		t.Setenv("OUTPOST_FIRSTBOOT_CRASH_AT", "")
		res := r2.firstboot(t, "--dhcp-timeout", "10s", "--enroll-attempts", "3")
		if res.code != 0 || !strings.Contains(res.stdout, "enrolled as "+name+"-1 ") {
			t.Errorf("%s: resumed run: exit %d, stdout %q\n%s", point, res.code, res.stdout, res.stderr)
			continue
		}
		var k struct {
			UseCount int `json:"use_count"`
		}
		show := inSrv("keys", "show", name, "--json")
		if err := json.Unmarshal([]byte(show), &k); err != nil || k.UseCount != 1 {
			t.Errorf("%s: key %s use count %d, want 1 (%v)\n%s", point, name, k.UseCount, err, show)
		}
		var conns []struct {
			Name string `json:"name"`
			Key  string `json:"key"`
		}
		list := inSrv("connectors", "list", "--json")
		if err := json.Unmarshal([]byte(list), &conns); err != nil {
			t.Fatalf("connectors list --json: %v\n%s", err, list)
		}
		var mine []string
		for _, c := range conns {
			if c.Key == name {
				mine = append(mine, c.Name)
			}
		}
		if len(mine) != 1 || mine[0] != name+"-1" {
			t.Errorf("%s: connectors enrolled with key %s: %v, want [%s-1]", point, name, mine, name)
		}
		if st := r2.status(t); st.State != firstboot.StateEnrolled || st.Name != name+"-1" {
			t.Errorf("%s: status %s %q", point, st.State, st.Name)
		}
		if _, err := os.Stat(filepath.Join(r2.root, "opt/outpost/var/provision_key")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: the provisioning key file is still there after enrollment (%v)", point, err)
		}
	}
}

// TestNamespaceRealServer enrolls against the real `outpost server` running
// in the server namespace, then shows its refusal for a second appliance on
// a key with one use.
func TestNamespaceRealServer(t *testing.T) {
	r := newNSRig(t)
	r.dnsmasq(t, true)
	r.Chronyd(t)
	inSrv, hostport := r.realServer(t)
	inSrv("groups", "create", "melbourne")
	text := inSrv("keys", "create", "--name", "Melbourne", "--group", "melbourne", "--max-uses", "1")
	key, err := provkey.Parse(text)
	if err != nil {
		t.Fatalf("key from outpost keys create: %v", err)
	}
	r.writeKey(t, key)
	res := r.firstboot(t, "--dhcp-timeout", "10s", "--enroll-attempts", "3")
	if res.code != 0 {
		t.Fatalf("exit %d\n%s", res.code, res.stderr)
	}
	t.Logf("first boot against the real control plane took %v", res.took)
	if !strings.Contains(res.stdout, "enrolled as Melbourne-1 (group melbourne)") {
		t.Errorf("stdout = %q", res.stdout)
	}
	crt, _ := os.ReadFile(filepath.Join(r.root, "var/lib/outpost/tls/connector.crt"))
	if !bytes.Contains(crt, []byte("BEGIN CERTIFICATE")) {
		t.Errorf("certificate chain not stored: %q", crt)
	}

	// Further appliances are refused with the server's reason: the same
	// (now used) key, an expired key, a key the server does not know.
	expiring, err := provkey.Parse(inSrv("keys", "create", "--name", "Brief", "--group", "melbourne", "--max-uses", "5", "--expires-in", "1s"))
	if err != nil {
		t.Fatal(err)
	}
	unknown := enrolltest.Key(t, hostport, key.Pin)
	time.Sleep(1100 * time.Millisecond)
	for i, c := range []struct {
		key  provkey.Key
		code string
	}{{key, "key_exhausted"}, {expiring, "key_expired"}, {unknown, "invalid_key"}} {
		other := filepath.Join(r.Dir, fmt.Sprintf("root%d", i+2))
		os.MkdirAll(filepath.Join(other, "proc"), 0o755)
		os.WriteFile(filepath.Join(other, "proc/meminfo"), []byte("MemTotal:        4028116 kB\n"), 0o644)
		r2 := *r
		r2.root = other
		r2.writeKey(t, c.key)
		res = r2.firstboot(t, "--dhcp-timeout", "10s", "--enroll-attempts", "3")
		if res.code != 1 || !strings.Contains(res.stderr, "enrollment refused: "+c.code+" — ") {
			t.Errorf("%s: exit %d\n%s", c.code, res.code, res.stderr)
		}
		if st := r2.status(t); st.State != firstboot.StateFailed || !strings.HasPrefix(st.LastError, "enrollment refused: "+c.code) {
			t.Errorf("%s: status %s %q", c.code, st.State, st.LastError)
		}
	}
}
