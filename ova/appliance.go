package ova

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/outpost-appliance/outpost/appliance"
)

// Defaults applied by Appliance.withDefaults, besides the appliance's own
// (package appliance: CPUs, memory, firmware, hardware version).
const (
	DefaultSCSIController = "lsilogic"
	DefaultNetwork        = "VM Network"
	DefaultOSType         = "other4xLinux64Guest"
)

// Appliance describes the virtual machine an OVA deploys. The zero value of
// each optional field means its default.
type Appliance struct {
	// Name names the VM at import and the files in the OVA
	// (NAME.ovf, NAME.mf, NAME.cert): letters, digits, '.', '_' and '-'.
	Name        string
	Product     string // ProductSection Product; defaults to Name
	Vendor      string
	Version     string
	Description string // shown as the VM's annotation

	CPUs      int // default 2
	MemoryMiB int // default 4096

	// MAC is the NIC's manual (static) MAC address, aa:bb:cc:dd:ee:ff.
	// Range checks are package appliance's job; only the syntax is checked
	// here.
	MAC string
	// Network is the name of the OVF network the NIC connects to, which
	// importers map to a port group; default "VM Network".
	Network string

	Firmware        string // OVF name: "efi" (default, appliance.FirmwareUEFI) or "bios"
	HardwareVersion string // vmx-NN; default vmx-14 so that ESXi 6.7 accepts it
	SCSIController  string // "lsilogic" (default) or "pvscsi"
	OSType          string // vSphere guest id; default other4xLinux64Guest

	// Properties are the user-configurable ProductSection properties; nil
	// means DefaultProperties().
	Properties []Property
}

// Property is one deployment-time setting the admin is prompted for.
type Property struct {
	Key         string
	Category    string // properties of one category must be adjacent
	Label       string
	Description string
	Default     string
	Password    bool     // the importer masks the value
	Choices     []string // when set, the value must be one of these (ValueMap)
}

// DefaultProperties returns the connector's deployment-time properties (the
// ones package appliance says the OVF declares), in the order the importer
// shows them.
func DefaultProperties() []Property {
	var out []Property
	for _, p := range appliance.OVFProperties() {
		out = append(out, Property{Key: p.Key, Category: p.Category, Label: p.Label, Description: p.Description,
			Default: p.Default, Password: p.Password, Choices: p.Choices})
	}
	return out
}

var (
	// memberRE is what a disk's member name in the OVA may hold.
	memberRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	keyRE    = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
)

// withDefaults returns a copy with every unset optional field filled.
func (a Appliance) withDefaults() Appliance {
	if a.Product == "" {
		a.Product = a.Name
	}
	if a.CPUs == 0 {
		a.CPUs = appliance.DefaultCPUs
	}
	if a.MemoryMiB == 0 {
		a.MemoryMiB = appliance.DefaultMemoryMiB
	}
	if a.Network == "" {
		a.Network = DefaultNetwork
	}
	if a.Firmware == "" {
		a.Firmware = appliance.DefaultFirmware.OVF()
	}
	if a.HardwareVersion == "" {
		a.HardwareVersion = appliance.DefaultVirtualHardware
	}
	if a.SCSIController == "" {
		a.SCSIController = DefaultSCSIController
	}
	if a.OSType == "" {
		a.OSType = DefaultOSType
	}
	if a.Properties == nil {
		a.Properties = DefaultProperties()
	}
	return a
}

// validate reports every problem of a (defaults filled) and its disks at once.
func (a Appliance) validate(disks []Disk) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("appliance %s: %s", field, fmt.Sprintf(format, args...)))
	}
	if err := appliance.CheckVMName(a.Name); err != nil {
		bad("name", "%v (it names the files in the OVA)", err)
	}
	for field, v := range map[string]string{"product": a.Product, "vendor": a.Vendor, "version": a.Version, "description": a.Description, "network": a.Network} {
		if i := badXMLChar(v); i >= 0 {
			bad(field, "character %U at byte %d cannot appear in an OVF descriptor", []rune(v[i:])[0], i)
		}
	}
	if a.CPUs < 1 || a.CPUs > 128 {
		bad("cpus", "%d is not between 1 and 128", a.CPUs)
	}
	if a.MemoryMiB < 256 || a.MemoryMiB%4 != 0 {
		bad("memory", "%d MiB must be at least 256 and a multiple of 4", a.MemoryMiB)
	}
	if a.MAC != "" {
		if hw, err := net.ParseMAC(a.MAC); err != nil || len(hw) != 6 || strings.ContainsAny(a.MAC, ".") {
			bad("mac", "%q is not a MAC address of the form 00:50:56:xx:xx:xx", a.MAC)
		}
	}
	if uefi := appliance.FirmwareUEFI.OVF(); a.Firmware != uefi && a.Firmware != "bios" {
		bad("firmware", "%q is neither %s nor bios", a.Firmware, uefi)
	}
	if err := appliance.CheckVirtualHardware(a.HardwareVersion); err != nil {
		bad("hardware version", "%v", err)
	}
	if _, ok := scsiSubType[a.SCSIController]; !ok {
		bad("scsi controller", "%q is neither lsilogic nor pvscsi", a.SCSIController)
	}
	seen := map[string]bool{}
	for i, p := range a.Properties {
		switch {
		case !keyRE.MatchString(p.Key):
			bad(fmt.Sprintf("properties[%d].key", i), "%q must hold only letters, digits, '.', '_' and '-'", p.Key)
		case seen[p.Key]:
			bad(fmt.Sprintf("properties[%d].key", i), "%q is declared twice", p.Key)
		}
		seen[p.Key] = true
		for field, v := range map[string]string{"category": p.Category, "label": p.Label, "description": p.Description, "default": p.Default} {
			if i := badXMLChar(v); i >= 0 {
				bad(fmt.Sprintf("property %s %s", p.Key, field), "character %U at byte %d cannot appear in an OVF descriptor", []rune(v[i:])[0], i)
			}
		}
		if len(p.Choices) > 0 && p.Default != "" && !contains(p.Choices, p.Default) {
			bad(fmt.Sprintf("property %s", p.Key), "default %q is not one of %q", p.Default, p.Choices)
		}
	}
	if len(disks) == 0 {
		errs = append(errs, errors.New("appliance has no disk: give at least one"))
	}
	for i, d := range disks {
		field := fmt.Sprintf("disks[%d]", i)
		if !memberRE.MatchString(d.Name) || len(d.Name) > 100 {
			bad(field+".name", "%q must be at most 100 characters (a ustar member name) of letters, digits, '.', '_' and '-'", d.Name)
		}
		if d.Capacity <= 0 {
			bad(field+".capacity", "%d bytes: the virtual disk size must be positive", d.Capacity)
		}
		if d.PopulatedSize < 0 || d.PopulatedSize > d.Capacity {
			bad(field+".populated size", "%d bytes is outside 0..capacity", d.PopulatedSize)
		}
	}
	return errors.Join(errs...)
}

// badXMLChar returns the byte index of the first character XML 1.0 cannot
// carry (control characters other than tab, CR and LF; invalid UTF-8), or -1.
func badXMLChar(s string) int {
	for i, r := range s {
		if r == utf8.RuneError || (r < 0x20 && r != '\t' && r != '\n' && r != '\r') || r == 0xFFFE || r == 0xFFFF {
			return i
		}
	}
	return -1
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
