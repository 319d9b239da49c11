package appliance

// Property keys. The OVF descriptor declares most of them in its
// ProductSection, first boot reads them from the OVF environment and its
// other sources, and users' scripts set them: never rename one.
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
	// Admin access: without either, the console shows the status banner
	// and accepts no login, and SSH stays off.
	PropAdminSSHKey       = "outpost.admin.ssh_key"
	PropAdminPasswordHash = "outpost.admin.password_hash"

	// Not declared in the OVF descriptor (the importer does not prompt for
	// them); set in the image defaults, QEMU fw_cfg or a seed ISO.
	PropDNSCheckHost = "outpost.dns.check_host"
	PropMTU          = "outpost.mtu"
)

// Values of PropIPv4Mode, as the importer offers them. First boot accepts
// them in any case.
const (
	IPv4ModeDHCP   = "DHCP"
	IPv4ModeStatic = "Static"
)

// PropertyType is a property's value type, in the image spec's words.
type PropertyType string

// Property types.
const (
	TypeString  PropertyType = "string"
	TypeBoolean PropertyType = "boolean"
	TypeInt     PropertyType = "int"
)

// Valid reports whether t is one of the known property types.
func (t PropertyType) Valid() bool {
	switch t {
	case TypeString, TypeBoolean, TypeInt:
		return true
	}
	return false
}

// Property is one setting of the appliance that first boot reads.
type Property struct {
	Key         string
	Type        PropertyType
	Category    string // the importer groups adjacent properties of one category
	Label       string
	Description string
	Default     string
	Password    bool     // the importer masks the value
	Choices     []string // when set, the value must be one of these
	// InOVF says the OVF descriptor declares the property, so the admin
	// is prompted for it at import. The others are read only from the
	// image defaults, QEMU fw_cfg, a seed ISO or a --config file.
	InOVF bool
}

// Categories of the importer's prompts, numbered so they sort in order.
const (
	categoryEnroll  = "1. Enrollment"
	categoryNetwork = "2. Network"
	categoryService = "3. Name and time services, proxy"
	categoryAdmin   = "4. Administrator access"
)

// Properties returns every property first boot reads: those the OVF
// descriptor declares first, in the order the importer shows them, then the
// others. The slice is the caller's.
func Properties() []Property {
	return []Property{
		{Key: PropProvisionKey, Type: TypeString, InOVF: true, Category: categoryEnroll, Label: "Provisioning key", Password: true,
			Description: "The provisioning key from the control plane, VERSION|HOST|BLOB. Paste it as is; it is checked before the appliance calls home."},
		{Key: PropHostname, Type: TypeString, InOVF: true, Category: categoryEnroll, Label: "Hostname",
			Description: "Host name of this connector (a DNS label or a fully qualified name). Empty: the image's name, outpost."},
		{Key: PropIPv4Mode, Type: TypeString, InOVF: true, Category: categoryNetwork, Label: "IPv4 configuration", Default: IPv4ModeDHCP,
			Choices:     []string{IPv4ModeDHCP, IPv4ModeStatic},
			Description: "DHCP, or Static to use the address, gateway and DNS servers below."},
		{Key: PropIPv4Address, Type: TypeString, InOVF: true, Category: categoryNetwork, Label: "IPv4 address/prefix",
			Description: "Static mode only: address and prefix length, e.g. 192.0.2.10/24."},
		{Key: PropIPv4Gateway, Type: TypeString, InOVF: true, Category: categoryNetwork, Label: "IPv4 gateway",
			Description: "Static mode only: the default gateway, e.g. 192.0.2.1."},
		{Key: PropDNSServers, Type: TypeString, InOVF: true, Category: categoryNetwork, Label: "DNS servers",
			Description: "Comma-separated DNS server addresses. Empty with DHCP: those DHCP offers."},
		{Key: PropDNSSearch, Type: TypeString, InOVF: true, Category: categoryNetwork, Label: "DNS search domains",
			Description: "Comma-separated search domains, e.g. corp.example.com,example.com."},
		{Key: PropNTPServers, Type: TypeString, InOVF: true, Category: categoryService, Label: "NTP servers",
			Description: "Comma-separated NTP server names or addresses. Empty: those DHCP offers; with none, the clock is not checked."},
		{Key: PropProxy, Type: TypeString, InOVF: true, Category: categoryService, Label: "HTTP proxy",
			Description: "Proxy for the connection to the control plane, e.g. http://proxy.example.com:3128. Empty: direct."},
		{Key: PropAdminSSHKey, Type: TypeString, InOVF: true, Category: categoryAdmin, Label: "Administrator SSH public key",
			Description: "An OpenSSH public key (ssh-ed25519 AAAA… admin@example) for root over SSH. Empty: SSH stays off."},
		{Key: PropAdminPasswordHash, Type: TypeString, InOVF: true, Category: categoryAdmin, Label: "Administrator password hash", Password: true,
			Description: "A crypt(3) hash ($y$… or $6$…, from mkpasswd or openssl passwd -6) for root at the console. Empty: the console accepts no login."},

		{Key: PropDNSCheckHost, Type: TypeString, Label: "Internal DNS check",
			Description: "An internal host name preflight must resolve, proving the DNS servers know the private network. Empty: not checked."},
		{Key: PropMTU, Type: TypeInt, Label: "MTU",
			Description: "MTU of the NIC, 576 to 9216. Empty: the NIC's default."},
	}
}

// OVFProperties returns the properties the OVF descriptor declares, in the
// order the importer shows them.
func OVFProperties() []Property {
	var out []Property
	for _, p := range Properties() {
		if p.InOVF {
			out = append(out, p)
		}
	}
	return out
}

// LookupProperty returns the property with the given key, and whether there
// is one.
func LookupProperty(key string) (Property, bool) {
	for _, p := range Properties() {
		if p.Key == key {
			return p, true
		}
	}
	return Property{}, false
}
