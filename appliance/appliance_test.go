package appliance

import (
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

func TestCheckVirtualHardware(t *testing.T) {
	for v, ok := range map[string]bool{
		"vmx-10": true, "vmx-13": true, "vmx-14": true, "vmx-21": true,
		"vmx-09": false, "vmx-22": false, "vmx-99": false, "14": false, "vmx-1": false,
		"vmx-014": false, "vmx-1a": false, "VMX-14": false, " vmx-14": false, "": false,
	} {
		err := CheckVirtualHardware(v)
		if (err == nil) != ok {
			t.Errorf("CheckVirtualHardware(%q) = %v, want ok=%v", v, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "vmx-10 to vmx-21") {
			t.Errorf("CheckVirtualHardware(%q) = %q, want it to name the range", v, err)
		}
	}
	if err := CheckVirtualHardware(DefaultVirtualHardware); err != nil {
		t.Errorf("the default %s: %v", DefaultVirtualHardware, err)
	}
}

func TestFirmwareOVF(t *testing.T) {
	if got := FirmwareUEFI.OVF(); got != "efi" {
		t.Errorf("FirmwareUEFI.OVF() = %q, want efi (vSphere's name)", got)
	}
	if DefaultFirmware != FirmwareUEFI || string(FirmwareUEFI) != "uefi" {
		t.Errorf("default firmware %q, want uefi", DefaultFirmware)
	}
	if got := Firmware("bios").OVF(); got != "bios" {
		t.Errorf(`Firmware("bios").OVF() = %q`, got)
	}
}

func TestNames(t *testing.T) {
	for name, ok := range map[string]bool{
		"outpost-connector": true, "a": true, "lab2": true, strings.Repeat("a", 63): true,
		"": false, "Bad_Name": false, "-a": false, "a-": false, "Melbourne-1": false, strings.Repeat("a", 64): false,
	} {
		if err := CheckName(name); (err == nil) != ok {
			t.Errorf("CheckName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
	for name, ok := range map[string]bool{
		"Melbourne-1": true, "outpost-connector": true, "a.b_c-1": true, strings.Repeat("a", MaxVMNameLen): true,
		"": false, "bad name/": false, ".hidden": false, "-x": false, strings.Repeat("a", MaxVMNameLen+1): false,
	} {
		if err := CheckVMName(name); (err == nil) != ok {
			t.Errorf("CheckVMName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func TestProperties(t *testing.T) {
	props := Properties()
	seen := map[string]bool{}
	var notInOVF []string
	for i, p := range props {
		if seen[p.Key] {
			t.Errorf("%s listed twice", p.Key)
		}
		seen[p.Key] = true
		if !strings.HasPrefix(p.Key, "outpost.") {
			t.Errorf("%s: first boot reads only outpost.* keys from the OVF environment", p.Key)
		}
		if !p.Type.Valid() {
			t.Errorf("%s: type %q", p.Key, p.Type)
		}
		if p.Label == "" || p.Description == "" {
			t.Errorf("%s: want a label and a description", p.Key)
		}
		if p.InOVF && p.Category == "" {
			t.Errorf("%s: an OVF property needs a category", p.Key)
		}
		if p.Password && p.Default != "" {
			t.Errorf("%s: a password must not have a default (it would be visible in the descriptor)", p.Key)
		}
		if len(p.Choices) > 0 && p.Default != "" && !slices.Contains(p.Choices, p.Default) {
			t.Errorf("%s: default %q not among %q", p.Key, p.Default, p.Choices)
		}
		if !p.InOVF {
			notInOVF = append(notInOVF, p.Key)
		} else if i > 0 && !props[i-1].InOVF {
			t.Errorf("%s: OVF properties come first", p.Key)
		}
		if got, ok := LookupProperty(p.Key); !ok || got.Key != p.Key {
			t.Errorf("LookupProperty(%s) = %+v, %v", p.Key, got, ok)
		}
	}
	if want := []string{PropDNSCheckHost, PropMTU}; !slices.Equal(notInOVF, want) {
		t.Errorf("properties not declared in the OVF: %q, want %q", notInOVF, want)
	}
	if n := len(OVFProperties()); n != len(props)-len(notInOVF) || n != 11 {
		t.Errorf("OVFProperties() has %d properties", n)
	}
	if _, ok := LookupProperty("outpost.bogus"); ok {
		t.Error("LookupProperty found outpost.bogus")
	}
	// The caller owns the slice: changing it does not change the contract.
	props[2].Choices[0] = "changed"
	props[0].Key = "changed"
	if p, _ := LookupProperty(PropIPv4Mode); p.Choices[0] != IPv4ModeDHCP || Properties()[0].Key != PropProvisionKey {
		t.Error("Properties() returned shared state")
	}
}

// TestStandardLibraryOnly keeps the contract a leaf: it ships in the
// appliance with first boot and is imported by the builder, the OVA writer
// and the deployer, so it may import nothing but the standard library.
func TestStandardLibraryOnly(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go command not on PATH")
	}
	const self = "github.com/outpost-appliance/outpost/appliance"
	cmd := exec.Command("go", "list", "-deps", "-json=ImportPath,Standard", self)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = new(strings.Builder)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(out)
	n := 0
	for {
		var p struct {
			ImportPath string
			Standard   bool
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n++
		if !p.Standard && p.ImportPath != self {
			t.Errorf("package appliance depends on %s; it may import only the standard library", p.ImportPath)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("go list: %v\n%s", err, cmd.Stderr)
	}
	if n < 2 {
		t.Fatalf("go list listed only %d packages", n)
	}
}

func TestMarkerRoundTrip(t *testing.T) {
	name, version, err := ParseMarker(Marker("outpost-connector", "1.2.3"))
	if err != nil || name != "outpost-connector" || version != "1.2.3" {
		t.Errorf("ParseMarker(Marker(…)) = %q, %q, %v", name, version, err)
	}
	if _, _, err := ParseMarker([]byte("hello\n")); err == nil {
		t.Error("a marker without NAME= accepted")
	}
}

func TestGuestStatusRoundTrip(t *testing.T) {
	for _, c := range []struct{ state, name, err, line, reason string }{
		{GuestEnrolled, "Melbourne-1", "", "enrolled Melbourne-1", ""},
		{GuestFailed, "", "provisioning key: curly quote U+201C\nmore", "failed: provisioning key: curly quote U+201C", "provisioning key: curly quote U+201C"},
		{"configuring", "", "", "configuring", ""},
	} {
		line := GuestStatus(c.state, c.name, c.err)
		if line != c.line {
			t.Errorf("GuestStatus(%q, %q, %q) = %q, want %q", c.state, c.name, c.err, line, c.line)
		}
		if state, reason := ParseGuestStatus(line); state != c.state || reason != c.reason {
			t.Errorf("ParseGuestStatus(%q) = %q, %q", line, state, reason)
		}
	}
}
