package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/internal/testtool"
	"github.com/outpost-appliance/outpost/provkey"
)

// The guest side, proven with the real programs: what deploy put on each
// simulated VM (the vApp properties on vCenter, the OVF environment in
// guestinfo.ovfEnv on ESXi) is handed to the real outpost-firstboot
// --config, running in a network namespace whose only way out is a veth to
// a second namespace with dnsmasq (DHCP, DNS), chronyd (NTP) and the real
// `outpost server`. Modelled on cmd/outpost-firstboot/netns_test.go.

const (
	guestSrvIP  = "10.78.0.1"
	guestCPPort = "8443"
)

// guestRig is the two namespaces, the programs and the control plane.
type guestRig struct {
	srv, cli  string // namespace names; the veth ends have the same names
	dir       string
	firstboot string // the built outpost-firstboot
	outpost   string // the built outpost
	admin     string // the server's admin config
}

func gsh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func buildProgram(t *testing.T, pkg string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

func newGuestRig(t *testing.T) *guestRig {
	t.Helper()
	if os.Geteuid() != 0 {
		testtool.Missing(t, "not root: network namespaces need root; run the tests as root")
	}
	testtool.Need(t, "ip", "dnsmasq", "chronyd")
	id := fmt.Sprintf("%d%d", os.Getpid()%100000, time.Now().UnixNano()%1000)
	r := &guestRig{srv: "ods" + id, cli: "odc" + id, dir: t.TempDir()}
	r.firstboot = buildProgram(t, "github.com/outpost-appliance/outpost/cmd/outpost-firstboot")
	r.outpost = buildProgram(t, "github.com/outpost-appliance/outpost/cmd/outpost")

	gsh(t, "ip", "netns", "add", r.srv)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", r.srv).Run() })
	gsh(t, "ip", "netns", "add", r.cli)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", r.cli).Run() })
	gsh(t, "ip", "-n", r.srv, "link", "add", r.srv, "type", "veth", "peer", "name", r.cli, "netns", r.cli)
	gsh(t, "ip", "-n", r.srv, "addr", "add", guestSrvIP+"/24", "dev", r.srv)
	gsh(t, "ip", "-n", r.srv, "link", "set", r.srv, "up")
	gsh(t, "ip", "-n", r.srv, "link", "set", "lo", "up")
	gsh(t, "ip", "-n", r.cli, "link", "set", "lo", "up")

	r.start(t, "dnsmasq", "dnsmasq", "--no-daemon", "--no-ping", "--conf-file=/dev/null",
		"--pid-file="+filepath.Join(r.dir, "dnsmasq.pid"), "--interface="+r.srv, "--bind-interfaces",
		"--no-resolv", "--no-hosts", "--dhcp-leasefile="+filepath.Join(r.dir, "leases"),
		"--dhcp-range=10.78.0.50,10.78.0.99,255.255.255.0,1h",
		"--dhcp-option=option:router,"+guestSrvIP, "--dhcp-option=option:dns-server,"+guestSrvIP,
		"--dhcp-option=option:ntp-server,"+guestSrvIP)
	guestWait(t, "dnsmasq", func() bool {
		b, _ := os.ReadFile(filepath.Join(r.dir, "dnsmasq.log"))
		return bytes.Contains(b, []byte("started"))
	})

	conf := filepath.Join(r.dir, "chrony.conf")
	pid := filepath.Join(r.dir, "chronyd.pid")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("allow 10.78.0.0/24\nlocal stratum 8\npidfile %s\ncmdport 0\nbindcmdaddress /\ndriftfile %s\n",
		pid, filepath.Join(r.dir, "drift"))), 0o644); err != nil {
		t.Fatal(err)
	}
	r.start(t, "chronyd", "chronyd", "-f", conf, "-x", "-d", "-u", "root")
	guestWait(t, "chronyd", func() bool { _, err := os.Stat(pid); return err == nil })

	data := filepath.Join(r.dir, "cp")
	hostport := guestSrvIP + ":" + guestCPPort
	r.start(t, "outpost-server", r.outpost, "server", "--data", data, "--listen", hostport, "--hostname", hostport)
	r.admin = filepath.Join(data, "admin.conf")
	guestWait(t, "outpost server", func() bool {
		if _, err := os.Stat(r.admin); err != nil {
			return false
		}
		return exec.Command("ip", "netns", "exec", r.srv, r.outpost, "groups", "list", "--config", r.admin).Run() == nil
	})
	return r
}

// start runs a program in the server namespace and kills it, by PID, when
// the test ends.
func (r *guestRig) start(t *testing.T, name, prog string, args ...string) {
	t.Helper()
	log, err := os.Create(filepath.Join(r.dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", r.srv, prog}, args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("%s log:\n%s", name, b)
		}
	})
}

func guestWait(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("%s did not start", what)
}

// admin runs an outpost admin command against the server; its stdout.
func (r *guestRig) adminCmd(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", r.srv, r.outpost}, append(args, "--config", r.admin)...)...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("outpost %v: %v\n%s", args, err, errb.String())
	}
	return strings.TrimSpace(string(out))
}

// boot runs first boot as VM name would: the client end of the veth takes
// the VM's MAC and loses what the previous VM configured, the VM gets a
// root of its own, and config is what deploy gave the VM.
func (r *guestRig) boot(t *testing.T, name, mac string, config []byte) {
	t.Helper()
	gsh(t, "ip", "-n", r.cli, "link", "set", r.cli, "down")
	gsh(t, "ip", "-n", r.cli, "addr", "flush", "dev", r.cli)
	gsh(t, "ip", "-n", r.cli, "link", "set", r.cli, "address", mac)
	root := filepath.Join(r.dir, "root-"+name)
	for _, f := range []struct{ path, data string }{{"proc/meminfo", "MemTotal:        4028116 kB\n"}} {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(f.path)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, f.path), []byte(f.data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/run/systemd/resolve/stub-resolv.conf", filepath.Join(root, "etc/resolv.conf")); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(r.dir, name+".config")
	if err := os.WriteFile(file, config, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", r.cli, r.firstboot, "--root", root, "--interface", r.cli,
		"--config", file, "--dhcp-timeout", "10s", "--enroll-attempts", "3")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: outpost-firstboot: %v\nstdout: %s\nstderr: %s", name, err, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "enrolled as "+name+" ") {
		t.Errorf("%s: first boot says %q", name, out.String())
	}
}

// guestConfig is what reached the simulated VM: its vApp property values
// as a property file on vCenter, its guestinfo.ovfEnv on ESXi.
func guestConfig(t *testing.T, cfg Config, name string) []byte {
	t.Helper()
	ctx := context.Background()
	s, err := Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx) //nolint:errcheck
	vm, err := s.finder.VirtualMachine(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	var m mo.VirtualMachine
	if err := vm.Properties(ctx, vm.Reference(), []string{"config.vAppConfig", "config.extraConfig"}, &m); err != nil {
		t.Fatal(err)
	}
	if s.API() == APIESXi {
		for _, o := range m.Config.ExtraConfig {
			if ov := o.GetOptionValue(); ov.Key == OVFEnvVar {
				return []byte(ov.Value.(string))
			}
		}
		t.Fatalf("%s has no %s", name, OVFEnvVar)
	}
	if m.Config.VAppConfig == nil {
		t.Fatalf("%s has no vApp config", name)
	}
	var b bytes.Buffer
	for _, p := range m.Config.VAppConfig.GetVmConfigInfo().Property {
		if strings.HasPrefix(p.Id, "outpost.") && p.Value != "" {
			fmt.Fprintf(&b, "%s=%s\n", p.Id, p.Value)
		}
	}
	return b.Bytes()
}

// TestGuestEnrolls deploys a pair on vCenter with static addresses and a
// pair on standalone ESXi with DHCP, each with a key made on the real
// control plane, boots every VM's properties with the real first boot, and
// asks the control plane for the four connectors.
func TestGuestEnrolls(t *testing.T) {
	r := newGuestRig(t)
	r.adminCmd(t, "groups", "create", "branch")
	vc := simulator.VPX()
	vc.ClusterHost = 2
	for _, tc := range []struct {
		key   string
		model *simulator.Model
		net   Network
	}{
		{"Adelaide", vc, Network{IPs: []string{"10.78.0.10/24", "10.78.0.11/24"}, Gateway: guestSrvIP, DNS: []string{guestSrvIP}, NTP: []string{guestSrvIP}}},
		{"Darwin", simulator.ESX(), Network{}},
	} {
		key, err := provkey.Parse(r.adminCmd(t, "keys", "create", "--name", tc.key, "--group", "branch", "--max-uses", "2"))
		if err != nil {
			t.Fatal(err)
		}
		if key.Host != guestSrvIP+":"+guestCPPort {
			t.Fatalf("key host %q, want the server's address in the namespace", key.Host)
		}
		s := startSim(t, tc.model)
		cfg := Config{Conn: s.conn, OVA: testOVA(t, false), Key: key, Name: tc.key, Count: 2, Net: tc.net}
		if tc.model == vc {
			cfg.Cluster, cfg.Network = "DC0_C0", "VM Network"
		}
		p, _, err := run(t, cfg, false)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range p.VMs {
			conf := guestConfig(t, cfg, v.Name)
			want := appliance.PropProvisionKey + "=" + key.Reveal()
			if tc.model != vc {
				want = `oe:key="` + appliance.PropProvisionKey + `"`
			}
			if !bytes.Contains(conf, []byte(want)) {
				t.Fatalf("%s: the VM's properties lack the key:\n%s", v.Name, conf)
			}
			r.boot(t, v.Name, v.MAC, conf)
			if ip := v.Properties[appliance.PropIPv4Address]; ip != "" {
				if addr := gsh(t, "ip", "-n", r.cli, "-4", "addr", "show", r.cli); !strings.Contains(addr, "inet "+ip) {
					t.Errorf("%s: the static address %s from deploy is not on the interface:\n%s", v.Name, ip, addr)
				}
			}
		}
	}
	var conns []struct {
		Name string `json:"name"`
		Key  string `json:"key"`
	}
	list := r.adminCmd(t, "connectors", "list", "--json")
	if err := json.Unmarshal([]byte(list), &conns); err != nil {
		t.Fatalf("connectors list --json: %v\n%s", err, list)
	}
	var names []string
	for _, c := range conns {
		names = append(names, c.Key+":"+c.Name)
	}
	slices.Sort(names)
	if want := []string{"Adelaide:Adelaide-1", "Adelaide:Adelaide-2", "Darwin:Darwin-1", "Darwin:Darwin-2"}; !slices.Equal(names, want) {
		t.Errorf("the control plane lists %q, want %q", names, want)
	}
}
