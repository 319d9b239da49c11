package ova

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/ovf"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/internal/govctest"
)

// readDescriptor takes the .ovf member out of an OVA and parses it with
// govmomi, as govc and the deployer do.
func readDescriptor(t *testing.T, path string) *ovf.Envelope {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env, _, err := ReadDescriptor(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return env
}

// setFirmware reconfigures a VM's firmware through the vSphere API (govc
// 0.56 has no vm.change -firmware).
func setFirmware(t *testing.T, sim govctest.Sim, vm, firmware string) {
	t.Helper()
	ctx := context.Background()
	c, err := govmomi.NewClient(ctx, sim.URL, true)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Logout(ctx) //nolint:errcheck
	obj, err := find.NewFinder(c.Client).VirtualMachine(ctx, vm)
	if err != nil {
		t.Fatal(err)
	}
	task, err := obj.Reconfigure(ctx, types.VirtualMachineConfigSpec{Firmware: firmware})
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatalf("setting firmware %s on %s: %v", firmware, vm, err)
	}
}

// TestGovcImport has the real govc read the OVA (import.spec) and import it
// into vcsim with property values, then reads the VM back with vm.info and
// device.info.
//
// vcsim's CreateImportSpec takes CPUs, memory, hardware version, guest id,
// disks, NICs and the ProductSection properties from the descriptor, but not
// the NIC's rasd:Address nor vmw:Config firmware (it always generates a MAC
// and leaves BIOS). vCenter reads both. So after the import the test applies
// the MAC and firmware that govmomi's parser finds in the descriptor the way
// outpost's deployer does on real vSphere (a manual MAC on the NIC, firmware
// in the VM config) and checks what vSphere then reports.
func TestGovcImport(t *testing.T) {
	disk := streamOptimizedDisk(t)
	ova := writeOVA(t, testAppliance(), []Disk{disk}, PackOptions{ModTime: epoch})
	govc := govctest.Govc(t)
	sim := govctest.Simulator(t)
	env := sim.Env

	// import.spec: what an admin (or a script) is asked for.
	var spec struct {
		PropertyMapping []struct {
			Key, Value string
			Spec       *struct {
				Password         *bool  `json:"password"`
				Label            string `json:"label"`
				UserConfigurable bool   `json:"userConfigurable"`
				Qualifiers       string `json:"qualifiers"`
			}
		}
		NetworkMapping []struct{ Name string }
		Annotation     string
	}
	out := govctest.Run(t, govc, env, "import.spec", "-verbose", ova)
	if err := json.Unmarshal([]byte(out), &spec); err != nil {
		t.Fatalf("import.spec output: %v\n%s", err, out)
	}
	var keys []string
	for _, p := range spec.PropertyMapping {
		keys = append(keys, p.Key)
		if p.Spec == nil || !p.Spec.UserConfigurable || p.Spec.Label == "" {
			t.Errorf("import.spec property %s: not user-configurable or no label: %+v", p.Key, p.Spec)
			continue
		}
		secret := p.Key == appliance.PropProvisionKey || p.Key == appliance.PropAdminPasswordHash
		if got := p.Spec.Password != nil && *p.Spec.Password; got != secret {
			t.Errorf("import.spec property %s: password = %v", p.Key, got)
		}
		if p.Key == appliance.PropIPv4Mode && (p.Value != "DHCP" || p.Spec.Qualifiers != `ValueMap{"DHCP","Static"}`) {
			t.Errorf("import.spec ipv4 mode: value %q qualifiers %q", p.Value, p.Spec.Qualifiers)
		}
	}
	wantKeys := []string{appliance.PropProvisionKey, appliance.PropHostname, appliance.PropIPv4Mode, appliance.PropIPv4Address, appliance.PropIPv4Gateway,
		appliance.PropDNSServers, appliance.PropDNSSearch, appliance.PropNTPServers, appliance.PropProxy,
		appliance.PropAdminSSHKey, appliance.PropAdminPasswordHash}
	if strings.Join(keys, " ") != strings.Join(wantKeys, " ") {
		t.Errorf("import.spec properties:\n got %v\nwant %v", keys, wantKeys)
	}
	if len(spec.NetworkMapping) != 1 || spec.NetworkMapping[0].Name != "VM Network" {
		t.Errorf("import.spec networks: %+v", spec.NetworkMapping)
	}

	// import.ova with the admin's answers.
	values := map[string]string{
		appliance.PropProvisionKey: "3|cp.example.com|c2VjcmV0",
		appliance.PropHostname:     "melbourne-1",
		appliance.PropIPv4Mode:     "Static",
		appliance.PropIPv4Address:  "192.0.2.10/24",
		appliance.PropIPv4Gateway:  "192.0.2.1",
		appliance.PropDNSServers:   "192.0.2.53,192.0.2.54",
		appliance.PropDNSSearch:    "corp.example.com",
		appliance.PropNTPServers:   "ntp.example.com",
		appliance.PropProxy:        "http://proxy.example.com:3128",
	}
	type kv struct{ Key, Value string }
	opts := struct {
		DiskProvisioning string
		PropertyMapping  []kv
		NetworkMapping   []struct{ Name, Network string }
	}{DiskProvisioning: "thin", NetworkMapping: []struct{ Name, Network string }{{"VM Network", "VM Network"}}}
	for _, k := range wantKeys {
		opts.PropertyMapping = append(opts.PropertyMapping, kv{k, values[k]})
	}
	optsJSON, _ := json.Marshal(opts)
	optsPath := filepath.Join(t.TempDir(), "opts.json")
	if err := os.WriteFile(optsPath, optsJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	govctest.Run(t, govc, env, "import.ova", "-pool", "DC0_C0/Resources", "-ds", "LocalDS_0", "-options", optsPath, ova)

	// The MAC and firmware as govmomi reads them from the descriptor.
	desc := readDescriptor(t, ova)
	cfg, err := desc.ToConfigSpec()
	if err != nil {
		t.Fatal(err)
	}
	var mac string
	for _, it := range desc.VirtualSystem.VirtualHardware[0].Item {
		if *it.ResourceType == ovf.EthernetAdapter {
			mac = deref(it.Address)
		}
	}
	if mac != "00:50:56:12:34:ab" || cfg.Firmware != "efi" {
		t.Fatalf("descriptor: MAC %q firmware %q", mac, cfg.Firmware)
	}
	govctest.Run(t, govc, env, "vm.network.change", "-vm", "outpost-connector", "-net", "VM Network", "-net.address", mac, "ethernet-0")
	setFirmware(t, sim, "outpost-connector", cfg.Firmware)

	var info struct {
		VirtualMachines []struct {
			Config struct {
				Version  string
				GuestId  string
				Firmware string
				Hardware struct {
					NumCPU   int
					MemoryMB int
				}
				ExtraConfig []kv
				VAppConfig  struct {
					Product  []struct{ Name, Vendor, Version string }
					Property []struct {
						Id, Label, Category, Type, Value, DefaultValue string
						UserConfigurable                               bool
					}
				}
			}
		}
	}
	out = govctest.Run(t, govc, env, "vm.info", "-e", "-json", "outpost-connector")
	if err := json.Unmarshal([]byte(out), &info); err != nil || len(info.VirtualMachines) != 1 {
		t.Fatalf("vm.info: %v\n%s", err, out)
	}
	c := info.VirtualMachines[0].Config
	if c.Hardware.NumCPU != 2 || c.Hardware.MemoryMB != 4096 || c.Version != "vmx-14" || c.GuestId != DefaultOSType || c.Firmware != "efi" {
		t.Errorf("vm.info: cpus %d memory %d version %s guest %s firmware %s; want 2, 4096, vmx-14, %s, efi",
			c.Hardware.NumCPU, c.Hardware.MemoryMB, c.Version, c.GuestId, c.Firmware, DefaultOSType)
	}
	if p := c.VAppConfig.Product; len(p) != 1 || p[0].Name != "Outpost Connector" || p[0].Version != "1.2.3" {
		t.Errorf("vApp product: %+v", p)
	}
	got := map[string]string{}
	for _, p := range c.VAppConfig.Property {
		got[p.Id] = p.Value
		if !p.UserConfigurable || p.Label == "" || p.Type != "string" {
			t.Errorf("vApp property %s: %+v", p.Id, p)
		}
	}
	extra := map[string]string{}
	for _, e := range c.ExtraConfig {
		extra[e.Key] = e.Value
	}
	for k, v := range values {
		if got[k] != v {
			t.Errorf("vApp property %s = %q, want %q", k, got[k], v)
		}
		if extra[k] != v {
			t.Errorf("extraConfig %s = %q, want %q", k, extra[k], v)
		}
	}

	var devs struct {
		Devices []struct {
			Name, Type, MacAddress, AddressType string
			Backing                             struct{ DeviceName string }
		}
	}
	out = govctest.Run(t, govc, env, "device.info", "-json", "-vm", "outpost-connector", "ethernet-*")
	if err := json.Unmarshal([]byte(out), &devs); err != nil || len(devs.Devices) != 1 {
		t.Fatalf("device.info: %v\n%s", err, out)
	}
	n := devs.Devices[0]
	if n.Type != "VirtualVmxnet3" || n.MacAddress != mac || !strings.EqualFold(n.AddressType, "manual") || n.Backing.DeviceName != "VM Network" {
		t.Errorf("NIC: %+v; want VirtualVmxnet3 on VM Network with manual MAC %s", n, mac)
	}
}
