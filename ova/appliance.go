package ova

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Property keys of the appliance's ProductSection. The first-boot program
// reads the same keys from the OVF environment (ovf-env.xml), so they are a
// contract: never rename one.
const (
	PropProvisionKey = "outpost.provision_key"
	PropHostname     = "outpost.hostname"
	PropIPv4Mode     = "outpost.ipv4.mode"
	PropIPv4Address  = "outpost.ipv4.address"
	PropIPv4Gateway  = "outpost.ipv4.gateway"
	PropDNSServers   = "outpost.dns.servers"
	PropDNSSearch    = "outpost.dns.search"
	PropNTPServers   = "outpost.ntp.servers"
	PropProxy        = "outpost.proxy"
)

// Values of PropIPv4Mode.
const (
	IPv4ModeDHCP   = "DHCP"
	IPv4ModeStatic = "Static"
)

// Defaults applied by Appliance.withDefaults.
const (
	DefaultCPUs            = 2
	DefaultMemoryMiB       = 4096
	DefaultFirmware        = "efi"
	DefaultHardwareVersion = "vmx-14" // ESXi 6.7 and later
	DefaultSCSIController  = "lsilogic"
	DefaultNetwork         = "VM Network"
	DefaultOSType          = "other4xLinux64Guest"
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
	// Range checks are package mac's job; only the syntax is checked here.
	MAC string
	// Network is the name of the OVF network the NIC connects to, which
	// importers map to a port group; default "VM Network".
	Network string

	Firmware        string // "efi" (default) or "bios"
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

// DefaultProperties returns the connector's deployment-time properties, in
// the order the importer shows them.
func DefaultProperties() []Property {
	const (
		enroll  = "1. Enrollment"
		network = "2. Network"
		svc     = "3. Name and time services, proxy"
	)
	return []Property{
		{Key: PropProvisionKey, Category: enroll, Label: "Provisioning key", Password: true,
			Description: "The provisioning key from the control plane, VERSION|HOST|BLOB. Paste it as is; it is checked before the appliance calls home."},
		{Key: PropHostname, Category: enroll, Label: "Hostname",
			Description: "Host name of this connector (a DNS label or a fully qualified name). Empty: derived from the connector's enrolled name."},
		{Key: PropIPv4Mode, Category: network, Label: "IPv4 configuration", Default: IPv4ModeDHCP,
			Choices:     []string{IPv4ModeDHCP, IPv4ModeStatic},
			Description: "DHCP, or Static to use the address, gateway and DNS servers below."},
		{Key: PropIPv4Address, Category: network, Label: "IPv4 address/prefix",
			Description: "Static mode only: address and prefix length, e.g. 192.0.2.10/24."},
		{Key: PropIPv4Gateway, Category: network, Label: "IPv4 gateway",
			Description: "Static mode only: the default gateway, e.g. 192.0.2.1."},
		{Key: PropDNSServers, Category: network, Label: "DNS servers",
			Description: "Comma-separated DNS server addresses. Empty with DHCP: those DHCP offers."},
		{Key: PropDNSSearch, Category: network, Label: "DNS search domains",
			Description: "Comma-separated search domains, e.g. corp.example.com,example.com."},
		{Key: PropNTPServers, Category: svc, Label: "NTP servers",
			Description: "Comma-separated NTP server names or addresses. Empty: those DHCP offers, else public pools."},
		{Key: PropProxy, Category: svc, Label: "HTTP proxy",
			Description: "Proxy for the connection to the control plane, e.g. http://proxy.example.com:3128. Empty: direct."},
	}
}

var (
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	vmxRE  = regexp.MustCompile(`^vmx-[0-9]{2}$`)
	keyRE  = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
)

// withDefaults returns a copy with every unset optional field filled.
func (a Appliance) withDefaults() Appliance {
	if a.Product == "" {
		a.Product = a.Name
	}
	if a.CPUs == 0 {
		a.CPUs = DefaultCPUs
	}
	if a.MemoryMiB == 0 {
		a.MemoryMiB = DefaultMemoryMiB
	}
	if a.Network == "" {
		a.Network = DefaultNetwork
	}
	if a.Firmware == "" {
		a.Firmware = DefaultFirmware
	}
	if a.HardwareVersion == "" {
		a.HardwareVersion = DefaultHardwareVersion
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
	if !nameRE.MatchString(a.Name) || len(a.Name) > 95 {
		bad("name", "%q must be at most 95 characters, start with a letter or digit and hold only letters, digits, '.', '_' and '-' (it names the files in the OVA)", a.Name)
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
	switch a.Firmware {
	case "efi", "bios":
	default:
		bad("firmware", "%q is neither efi nor bios", a.Firmware)
	}
	if !vmxRE.MatchString(a.HardwareVersion) {
		bad("hardware version", "%q is not of the form vmx-NN (vmx-14 for ESXi 6.7)", a.HardwareVersion)
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
		if !nameRE.MatchString(d.Name) || len(d.Name) > 100 {
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
