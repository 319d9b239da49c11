package config

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/firstboot/sysroot"
	"github.com/outpost-appliance/outpost/provkey"
)

// A document as govmomi's ovf.Env.MarshalManual writes it.
const ovfEnvDoc = `<?xml version="1.0" encoding="UTF-8"?>
<Environment
		xmlns="http://schemas.dmtf.org/ovf/environment/1"
		xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
		xmlns:oe="http://schemas.dmtf.org/ovf/environment/1"
		xmlns:ve="http://www.vmware.com/schema/ovfenv"
		oe:id=""
		ve:esxId="vm-42"><PlatformSection>
		<Kind>VMware ESXi</Kind><Version>8.0</Version><Vendor>VMware, Inc.</Vendor><Locale>en</Locale>
		</PlatformSection><PropertySection><Property oe:key="outpost.hostname" oe:value="conn-a"/><Property oe:key="outpost.ipv4.mode" oe:value="Static"/><Property oe:key="outpost.ipv4.address" oe:value="192.0.2.10/24"/><Property oe:key="outpost.ipv4.gateway" oe:value="192.0.2.1"/><Property oe:key="outpost.dns.servers" oe:value="192.0.2.53, 192.0.2.54"/><Property oe:key="outpost.proxy" oe:value=""/><Property oe:key="other.thing" oe:value="x"/></PropertySection></Environment>`

func testKey(t *testing.T) string {
	t.Helper()
	k, err := provkey.Generate("cp.example.com", provkey.Pin{1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k.Reveal()
}

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	w := func(name, content string) {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	key := testKey(t)
	w("etc/outpost/defaults", "# image defaults\noutpost.ntp.servers=pool.example.org\noutpost.hostname=outpost\noutpost.dns.search=corp.example\n")
	w("sys/firmware/qemu_fw_cfg/by_name/opt/outpost/config/raw", "outpost.hostname=from-fwcfg\n")
	w("opt/outpost/var/provision_key", key+"\n")
	root, _ := sysroot.New(dir)
	l := Loader{Root: root, CDROMs: []string{}, RPCTool: func(context.Context, string) ([]byte, error) {
		return []byte(ovfEnvDoc), nil
	}}
	c, sets, err := l.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(sets) != 4 {
		t.Errorf("sources = %d, want 4 (defaults, guestinfo, fw_cfg, key file)", len(sets))
	}
	if c.Hostname != "from-fwcfg" || c.Origin[appliance.PropHostname] != FwCfgFile {
		t.Errorf("hostname = %q from %q, want fw_cfg to override OVF and defaults", c.Hostname, c.Origin[appliance.PropHostname])
	}
	if c.Mode != Static || c.Address.String() != "192.0.2.10/24" || c.Gateway.String() != "192.0.2.1" {
		t.Errorf("ipv4 = %v %v %v", c.Mode, c.Address, c.Gateway)
	}
	if len(c.DNSServers) != 2 || c.NTPServers[0] != "pool.example.org" || c.DNSSearch[0] != "corp.example" {
		t.Errorf("dns/ntp = %v %v %v", c.DNSServers, c.NTPServers, c.DNSSearch)
	}
	if !c.HasKey || c.Key.Reveal() != key || c.KeySource != KeyFile {
		t.Errorf("key not read from the key file: has=%v source=%q", c.HasKey, c.KeySource)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	props := map[string]Value{
		appliance.PropHostname:     {"my connector", "ovf"},
		appliance.PropIPv4Mode:     {"Static", "ovf"},
		appliance.PropIPv4Address:  {"10.0.0.300/24", "ovf"},
		appliance.PropDNSServers:   {"10.0.0.1, dns.example", "ovf"},
		appliance.PropProvisionKey: {"1|cp.example.com|AAAA", "ovf"},
		"outpost.colour":           {"blue", "ovf"},
	}
	_, err := Validate(props)
	var ve *ValidationError
	if !errors.As(err, &ve) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want a ValidationError", err)
	}
	msg := err.Error()
	for _, want := range []string{
		`outpost.hostname (from ovf): "my connector": a host name cannot contain spaces`,
		`outpost.ipv4.address (from ovf): "10.0.0.300/24" is not an IPv4 address`,
		`outpost.dns.servers (from ovf): "dns.example" is not an IP address`,
		`outpost.provision_key (from ovf): error: line 1, column 21: the blob is 4 characters, want 104: the end of the key was cut off`,
		`outpost.colour (from ovf): unknown property`,
		`nothing was changed`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "AAAA") {
		t.Error("error repeats the key text")
	}
}

func TestValidateCases(t *testing.T) {
	cases := []struct {
		name  string
		props map[string]string
		want  string // substring of the error; "" = valid
	}{
		{"dhcp default", map[string]string{}, ""},
		{"static without DNS", map[string]string{appliance.PropIPv4Mode: "static", appliance.PropIPv4Address: "192.0.2.10/24"}, "outpost.dns.servers: required when outpost.ipv4.mode is Static"},
		{"gateway outside subnet", map[string]string{appliance.PropIPv4Mode: "static", appliance.PropIPv4Address: "192.0.2.10/24", appliance.PropIPv4Gateway: "198.51.100.1"}, "outpost.ipv4.gateway: 198.51.100.1 is outside the subnet 192.0.2.0/24"},
		{"static without address", map[string]string{appliance.PropIPv4Mode: "static"}, "outpost.ipv4.address: required when outpost.ipv4.mode is Static"},
		{"bad mode", map[string]string{appliance.PropIPv4Mode: "auto"}, "want DHCP or Static"},
		{"gateway not an IP", map[string]string{appliance.PropIPv4Gateway: "gw"}, `outpost.ipv4.gateway: "gw" is not an IPv4 address`},
		{"proxy", map[string]string{appliance.PropProxy: "proxy:3128"}, "outpost.proxy"},
		{"proxy ok", map[string]string{appliance.PropProxy: "http://proxy.example.com:3128"}, ""},
		{"mtu", map[string]string{appliance.PropMTU: "100"}, "outpost.mtu"},
		{"ntp host", map[string]string{appliance.PropNTPServers: "ntp1.example.com 192.0.2.123"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			props := map[string]Value{}
			for k, v := range c.props {
				props[k] = Value{Text: v}
			}
			_, err := Validate(props)
			if c.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}

func TestOVFEnvNotXML(t *testing.T) {
	_, err := ParseOVFEnv("/dev/sr0/ovf-env.xml", []byte("hostname=foo"))
	if err == nil || !strings.Contains(err.Error(), "/dev/sr0/ovf-env.xml: not an OVF environment document") {
		t.Fatalf("err = %v", err)
	}
	s, err := ParseOVFEnv("x", []byte(ovfEnvDoc))
	if err != nil {
		t.Fatal(err)
	}
	if s.Props[appliance.PropIPv4Address] != "192.0.2.10/24" || len(s.Props) != 6 {
		t.Errorf("props = %v (non-outpost keys must be dropped)", s.Props)
	}
}

func FuzzParseOVFEnv(f *testing.F) {
	f.Add([]byte(ovfEnvDoc))
	f.Add([]byte("<Environment/>"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseOVFEnv("f", b)
		if err == nil {
			Validate(Merge(*s))
		}
	})
}

func FuzzParseProperties(f *testing.F) {
	f.Add([]byte("outpost.hostname=a\n# c\n\noutpost.mtu=1500"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, _ := ParseProperties("f", b)
		Validate(Merge(*s))
	})
}
