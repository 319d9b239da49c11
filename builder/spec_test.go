package builder

import (
	"strings"
	"testing"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/images"
)

const specFile = "images/connector/image.yaml"

func TestConnectorSpec(t *testing.T) {
	s, warnings, err := ParseSpec(images.ConnectorPath, images.Connector)
	if err != nil {
		t.Fatalf("embedded connector spec: %v", err)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings: %q", warnings)
	}
	if s.Name != "outpost-connector" || s.Hardware.CPUs != 2 || s.Hardware.MemoryMiB != 4096 ||
		s.Hardware.Disk.Size != 8<<30 || s.Hardware.NICs != 1 || s.Hardware.Firmware != "uefi" {
		t.Errorf("connector spec = %+v", s)
	}
	m, err := s.MAC()
	if err != nil || m != appliance.DeriveMAC("outpost-connector") {
		t.Errorf("MAC() = %s, %v; want derived %s", m, err, appliance.DeriveMAC("outpost-connector"))
	}
	var key *Property
	for i := range s.Properties {
		if s.Properties[i].Key == "outpost.provision_key" {
			key = &s.Properties[i]
		}
	}
	if key == nil || !key.Password {
		t.Errorf("provisioning key property missing or not a password: %+v", key)
	}
}

func TestDefaults(t *testing.T) {
	s, _, err := ParseSpec(specFile, []byte("name: a\nversion: '1'\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := s.Hardware
	if h.CPUs != 2 || h.MemoryMiB != 4096 || h.Disk.Size != 8<<30 || h.Disk.Provisioning != "thin" || h.NICs != 1 || h.Firmware != "uefi" {
		t.Errorf("defaults = %+v", h)
	}
}

func TestSpecProblems(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // every line of the error, in order
	}{
		{
			name: "unknown fields",
			yaml: "name: a\nversion: '1'\nhardware:\n  memroy: 4096\n  cpus: 2\nextra: 1\n",
			want: []string{
				specFile + `: hardware.memroy: unknown field "memroy" (check the spelling against images/connector/image.yaml) (line 4)`,
				specFile + `: extra: unknown field "extra" (check the spelling against images/connector/image.yaml) (line 6)`,
			},
		},
		{
			name: "wrong types",
			yaml: "name: a\nversion: '1'\nhardware:\n  cpus: two\n  disk:\n    size: 8GB\n",
			want: []string{
				specFile + `: hardware.cpus: cannot unmarshal text ` + "`two`" + ` (line 4)`,
				specFile + `: hardware.disk.size: "8GB" is not a size: write a whole number with KiB, MiB, GiB or TiB (e.g. 8GiB) (line 6)`,
			},
		},
		{
			name: "impossible hardware, all at once",
			yaml: "name: Bad_Name\nversion: '1'\nhardware:\n  cpus: 100\n  memory: 512\n  disk:\n    size: 100MiB\n    provisioning: fat\n  nics: 2\n  firmware: bios\n  virtual_hardware: vmx-99\nnic:\n  mac: 00:0c:29:00:00:01\n",
			want: []string{
				specFile + `: name: "Bad_Name" is not a valid name: use 1–63 lower-case letters, digits and '-', not starting or ending with '-'`,
				specFile + `: hardware.cpus: 100 vCPUs is impossible: use 1–64 (default 2)`,
				specFile + `: hardware.memory: 512 MiB is too little: the connector needs at least 2048 MiB (lab only) and 4096 MiB in production`,
				specFile + `: hardware.disk.size: 100MiB is impossible: use 1GiB–2TiB`,
				specFile + `: hardware.disk.provisioning: "fat" is not known: use thin (thick is chosen at import)`,
				specFile + `: hardware.nics: 2 NICs: the connector appliance has exactly one NIC`,
				specFile + `: hardware.firmware: "bios" is not supported: the disk boots with systemd-boot, so firmware must be uefi`,
				specFile + `: hardware.virtual_hardware: "vmx-99" is not a VMware virtual hardware version: use vmx-NN from vmx-10 to vmx-21 (vmx-14 for ESXi 6.7, vmx-13 for ESXi 6.5)`,
				specFile + `: nic.mac: invalid MAC address 00:0c:29:00:00:01: outside VMware's manual range ` + appliance.MACRange + ` (the address must start with 00:50:56)`,
			},
		},
		{
			// Zero written explicitly is not an omitted field: refused, not
			// silently replaced by the default.
			name: "explicit zeros",
			yaml: "name: a\nversion: '1'\nhardware:\n  cpus: 0\n  memory: 0\n  disk:\n    size: 0GiB\n  nics: 0\n",
			want: []string{
				specFile + `: hardware.cpus: 0 is zero: give a value, or leave the field out for the default 2 (line 4)`,
				specFile + `: hardware.memory: 0 is zero: give a value, or leave the field out for the default 4096 (line 5)`,
				specFile + `: hardware.disk.size: 0GiB is zero: give a value, or leave the field out for the default 8GiB (line 7)`,
				specFile + `: hardware.nics: 0 is zero: give a value, or leave the field out for the default 1 (line 8)`,
			},
		},
		{
			// Thin and thick would give the same bytes: OVF has no place
			// for it, the importer chooses.
			name: "thick provisioning",
			yaml: "name: a\nversion: '1'\nhardware:\n  disk:\n    provisioning: thick\n",
			want: []string{
				specFile + `: hardware.disk.provisioning: thick cannot be built into an image: an OVF descriptor gives the disk's capacity only, and thin or thick is chosen when the OVA is imported (vSphere's "Select virtual disk format", ovftool --diskMode=thick, govc import.ova with "DiskProvisioning": "thick" in its options); use thin or leave the field out`,
			},
		},
		{
			name: "missing name and version",
			yaml: "hardware:\n  cpus: 1\n",
			want: []string{
				specFile + `: name: missing; give the appliance a name such as outpost-connector`,
				specFile + `: version: missing; give a version such as 1.0.0`,
			},
		},
		{
			name: "properties",
			yaml: "name: a\nversion: '1'\nproperties:\n" +
				"  - {key: outpost.provision_key, label: Key, password: true, default: x}\n" +
				"  - {key: outpost.provision_key, label: Again}\n" +
				"  - {key: Bad Key, type: float}\n" +
				"  - {key: outpost.flag, label: Flag, type: boolean, default: yes}\n",
			want: []string{
				specFile + `: properties[0].default: a password property must not have a default: it would be visible in the OVF descriptor`,
				specFile + `: properties[1].key: "outpost.provision_key" is already defined by properties[0]`,
				specFile + `: properties[2].key: "Bad Key" is not a valid key: use dot-separated lower-case words such as outpost.hostname`,
				specFile + `: properties[2].label: missing; the admin sees the label when prompted at import`,
				specFile + `: properties[2].type: "float" is not known: use string, boolean or int`,
				specFile + `: properties[3].default: "yes" is not a boolean: use true or false`,
			},
		},
		{
			name: "both rootfs sources",
			yaml: "name: a\nversion: '1'\nrootfs: {dir: x, tar: y.tar}\n",
			want: []string{specFile + `: rootfs: both dir and tar are set; give one`},
		},
		{
			name: "empty",
			yaml: "",
			want: []string{specFile + `: empty file; an image spec needs at least name and version`},
		},
		{
			name: "not yaml",
			yaml: "name: [\n",
			want: []string{specFile + `: did not find expected node content (line 1)`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ParseSpec(specFile, []byte(tt.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			got := strings.Split(err.Error(), "\n")
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("error:\n%s\nwant:\n%s", err, strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestLabMemoryWarns(t *testing.T) {
	_, warnings, err := ParseSpec(specFile, []byte("name: a\nversion: '1'\nhardware: {memory: 2048}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "hardware.memory: 2048 MiB is for labs only") {
		t.Errorf("warnings = %q", warnings)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]Size{"8GiB": 8 << 30, "512 MiB": 512 << 20, "4096": 4096, "1TiB": 1 << 40} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"8GB", "-1GiB", "1.5GiB", "", "GiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
	if s := Size(8 << 30).String(); s != "8GiB" {
		t.Errorf("String = %s", s)
	}
}

func FuzzParseSpec(f *testing.F) {
	f.Add(images.Connector)
	f.Fuzz(func(t *testing.T, data []byte) {
		s, _, err := ParseSpec(specFile, data)
		if err == nil && (s.Name == "" || s.Hardware.CPUs < 1) {
			t.Fatalf("accepted invalid spec %+v", s)
		}
	})
}

func TestRootfsPath(t *testing.T) {
	for _, tt := range []struct {
		spec, path, want string
	}{
		{"rootfs: {dir: rootfs}", "images/connector/image.yaml", "images/connector/rootfs"},
		{"rootfs: {tar: /srv/rootfs.tar}", "images/connector/image.yaml", "/srv/rootfs.tar"},
		{"rootfs: {tar: ../build/rootfs.tar.gz}", "/repo/images/connector/image.yaml", "/repo/images/build/rootfs.tar.gz"},
		{"", "images/connector/image.yaml", ""},
	} {
		s, _, err := ParseSpec(tt.path, []byte("name: a\nversion: '1'\n"+tt.spec+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		if got := s.RootfsPath(); got != tt.want {
			t.Errorf("%q in %s: RootfsPath() = %q, want %q", tt.spec, tt.path, got, tt.want)
		}
	}
}
