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
	"github.com/outpost-appliance/outpost/internal/nstest"
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
	*nstest.Rig
	firstboot string                      // the built outpost-firstboot
	outpost   string                      // the built outpost
	adminCmd  func(args ...string) string // an admin command against the server; its stdout
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
	r := &guestRig{Rig: nstest.New(t, "od", guestSrvIP, "dnsmasq", "chronyd")}
	r.firstboot = buildProgram(t, "github.com/outpost-appliance/outpost/cmd/outpost-firstboot")
	r.outpost = buildProgram(t, "github.com/outpost-appliance/outpost/cmd/outpost")
	r.Dnsmasq(t, nstest.DNS{DHCP: true})
	r.Chronyd(t)
	r.adminCmd, _ = r.RealServer(t, r.outpost, guestCPPort)
	return r
}

// boot runs first boot as VM name would: the client end of the veth takes
// the VM's MAC and loses what the previous VM configured, the VM gets a
// root of its own, and config is what deploy gave the VM.
func (r *guestRig) boot(t *testing.T, name, mac string, config []byte) {
	t.Helper()
	gsh(t, "ip", "-n", r.Cli, "link", "set", r.Cli, "down")
	gsh(t, "ip", "-n", r.Cli, "addr", "flush", "dev", r.Cli)
	gsh(t, "ip", "-n", r.Cli, "link", "set", r.Cli, "address", mac)
	root := filepath.Join(r.Dir, "root-"+name)
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
	file := filepath.Join(r.Dir, name+".config")
	if err := os.WriteFile(file, config, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", r.Cli, r.firstboot, "--root", root, "--interface", r.Cli,
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
	r.adminCmd("groups", "create", "branch")
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
		key, err := provkey.Parse(r.adminCmd("keys", "create", "--name", tc.key, "--group", "branch", "--max-uses", "2"))
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
				if addr := gsh(t, "ip", "-n", r.Cli, "-4", "addr", "show", r.Cli); !strings.Contains(addr, "inet "+ip) {
					t.Errorf("%s: the static address %s from deploy is not on the interface:\n%s", v.Name, ip, addr)
				}
			}
		}
	}
	var conns []struct {
		Name string `json:"name"`
		Key  string `json:"key"`
	}
	list := r.adminCmd("connectors", "list", "--json")
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
