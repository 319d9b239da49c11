// Package nstest is the test rig for programs that must meet real network
// services: two network namespaces the test makes, joined by a veth pair.
// The server side gets dnsmasq (DHCP and DNS), chronyd (NTP) and a control
// plane; the program under test runs on the client side. Everything the rig
// starts is stopped by PID, and the namespaces deleted, when the test ends;
// no traffic leaves the two namespaces. Tests using it run as root.
package nstest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/outpost-appliance/outpost/internal/testtool"
)

// Rig is the two namespaces and what runs in the server one.
type Rig struct {
	Srv, Cli string // namespace names; the veth ends have the same names
	SrvIP    string // the server end's address in its /24
	Dir      string // logs, leases, configuration
}

// Need skips (or fails under CI) without root, ip and tools.
func Need(t testing.TB, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		testtool.Missing(t, "not root: network namespaces need root; run the tests as root")
	}
	testtool.Need(t, append([]string{"ip"}, tools...)...)
}

// Sh runs a command and fails the test with its output if it fails.
func Sh(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// New makes the namespaces (named prefix+"s"+id and prefix+"c"+id, at most
// 15 characters with a 3-letter prefix) joined by a veth pair, the server
// end at srvIP/24 and up, the client end down for the test to configure.
func New(t testing.TB, prefix, srvIP string, tools ...string) *Rig {
	t.Helper()
	Need(t, tools...)
	id := fmt.Sprintf("%d%d", os.Getpid()%100000, time.Now().UnixNano()%1000)
	r := &Rig{Srv: prefix + "s" + id, Cli: prefix + "c" + id, SrvIP: srvIP, Dir: t.TempDir()}
	Sh(t, "ip", "netns", "add", r.Srv)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", r.Srv).Run() })
	Sh(t, "ip", "netns", "add", r.Cli)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", r.Cli).Run() })
	Sh(t, "ip", "-n", r.Srv, "link", "add", r.Srv, "type", "veth", "peer", "name", r.Cli, "netns", r.Cli)
	Sh(t, "ip", "-n", r.Srv, "addr", "add", srvIP+"/24", "dev", r.Srv)
	Sh(t, "ip", "-n", r.Srv, "link", "set", r.Srv, "up")
	Sh(t, "ip", "-n", r.Srv, "link", "set", "lo", "up")
	Sh(t, "ip", "-n", r.Cli, "link", "set", "lo", "up")
	return r
}

// net24 is the first three octets of the server's /24.
func (r *Rig) net24() string { return r.SrvIP[:strings.LastIndexByte(r.SrvIP, '.')] }

// Start runs prog in the server namespace, its output in Dir/name.log, and
// kills it by PID when the test ends (showing the log if the test failed).
func (r *Rig) Start(t testing.TB, name, prog string, args ...string) {
	t.Helper()
	log, err := os.Create(filepath.Join(r.Dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", r.Srv, prog}, args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("%s log:\n%s", name, b)
		}
	})
}

// DNS says what dnsmasq serves.
type DNS struct {
	// DHCP offers leases in .50–.99 with the server as router, DNS and
	// NTP server; without it dnsmasq answers DNS only.
	DHCP bool
	// Hosts are NAME,ADDRESS records.
	Hosts []string
	// Search is the domain search list DHCP sends (option 119).
	Search string
}

// Dnsmasq starts dnsmasq on the server end and waits until it answers.
func (r *Rig) Dnsmasq(t testing.TB, d DNS) {
	t.Helper()
	args := []string{"--no-daemon", "--no-ping", "--conf-file=/dev/null", "--pid-file=" + filepath.Join(r.Dir, "dnsmasq.pid"),
		"--interface=" + r.Srv, "--bind-interfaces", "--no-resolv", "--no-hosts", "--dhcp-leasefile=" + filepath.Join(r.Dir, "leases")}
	for _, h := range d.Hosts {
		args = append(args, "--host-record="+h)
	}
	if d.DHCP {
		n := r.net24()
		args = append(args, "--dhcp-range="+n+".50,"+n+".99,255.255.255.0,1h",
			"--dhcp-option=option:router,"+r.SrvIP, "--dhcp-option=option:dns-server,"+r.SrvIP,
			"--dhcp-option=option:ntp-server,"+r.SrvIP)
		if d.Search != "" {
			args = append(args, "--dhcp-option=option:domain-search,"+d.Search)
		}
	}
	r.Start(t, "dnsmasq", "dnsmasq", args...)
	WaitFor(t, "dnsmasq", func() bool {
		b, _ := os.ReadFile(filepath.Join(r.Dir, "dnsmasq.log"))
		return bytes.Contains(b, []byte("cleared cache")) || bytes.Contains(b, []byte("started"))
	})
}

// Chronyd starts an NTP server (local stratum 8, the host's clock) on the
// server side and waits until it runs.
func (r *Rig) Chronyd(t testing.TB) {
	t.Helper()
	conf := filepath.Join(r.Dir, "chrony.conf")
	pid := filepath.Join(r.Dir, "chronyd.pid")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("allow %s.0/24\nlocal stratum 8\npidfile %s\ncmdport 0\nbindcmdaddress /\ndriftfile %s\n",
		r.net24(), pid, filepath.Join(r.Dir, "drift"))), 0o644); err != nil {
		t.Fatal(err)
	}
	r.Start(t, "chronyd", "chronyd", "-f", conf, "-x", "-d", "-u", "root")
	WaitFor(t, "chronyd", func() bool { _, err := os.Stat(pid); return err == nil })
}

// RealServer starts the real `outpost server` (the binary outpost) on
// SrvIP:port in the server namespace, and returns a function running admin
// commands against it (their stdout) and the control plane's address.
func (r *Rig) RealServer(t testing.TB, outpost, port string) (admin func(args ...string) string, hostport string) {
	t.Helper()
	data := filepath.Join(r.Dir, "cp")
	hostport = r.SrvIP + ":" + port
	r.Start(t, "outpost-server", outpost, "server", "--data", data, "--listen", hostport, "--hostname", hostport)
	conf := filepath.Join(data, "admin.conf")
	WaitFor(t, "outpost server", func() bool {
		if _, err := os.Stat(conf); err != nil {
			return false
		}
		return exec.Command("ip", "netns", "exec", r.Srv, outpost, "groups", "list", "--config", conf).Run() == nil
	})
	return func(args ...string) string {
		t.Helper()
		cmd := exec.Command("ip", append([]string{"netns", "exec", r.Srv, outpost}, append(args, "--config", conf)...)...)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("outpost %v: %v\n%s", args, err, errb.String())
		}
		return strings.TrimSpace(string(out))
	}, hostport
}

// ListenIn opens a TCP listener on addr inside the namespace ns.
func ListenIn(t testing.TB, ns, addr string) net.Listener {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		t.Fatal(err)
	}
	defer netns.Set(orig)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// WaitFor polls ok for up to 10 s and fails the test naming what did not
// happen.
func WaitFor(t testing.TB, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("%s did not happen within 10 s", what)
}
