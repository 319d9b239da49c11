// Package config is first boot's typed configuration: where the values come
// from (image defaults, the OVF environment, QEMU fw_cfg, a seed ISO, the key
// file), how they override each other, and the validation that runs, in
// full, before first boot changes anything on the appliance.
//
// Every value is a property with a dotted name, the same names the OVF
// descriptor declares (outpost.hostname, outpost.ipv4.mode, …; package
// appliance lists them), so a problem is reported with the property and the
// source it came from. This package reads; it never applies anything.
package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/provkey"
)

// Mode is how IPv4 is configured.
type Mode string

// IPv4 modes.
const (
	DHCP   Mode = "dhcp"
	Static Mode = "static"
)

// Config is the validated first-boot configuration.
type Config struct {
	// Key is the provisioning key; HasKey is false until one is given.
	Key       provkey.Key `json:"-"`
	HasKey    bool        `json:"has_key"`
	KeySource string      `json:"key_source,omitempty"`

	Hostname   string       `json:"hostname,omitempty"`
	Mode       Mode         `json:"ipv4_mode"`
	Address    netip.Prefix `json:"ipv4_address,omitzero"`
	Gateway    netip.Addr   `json:"ipv4_gateway,omitzero"`
	DNSServers []netip.Addr `json:"dns_servers,omitempty"`
	DNSSearch  []string     `json:"dns_search,omitempty"`
	DNSCheck   string       `json:"dns_check_host,omitempty"`
	NTPServers []string     `json:"ntp_servers,omitempty"`
	Proxy      string       `json:"proxy,omitempty"`
	MTU        int          `json:"mtu,omitempty"`
	// SSHKeys are the administrator's OpenSSH public keys; PasswordHash is
	// root's crypt(3) hash for the console (never logged or persisted).
	SSHKeys      []string `json:"ssh_keys,omitempty"`
	PasswordHash string   `json:"-"`
	// Warnings are safe repairs made to the values (e.g. quotes removed
	// around the key), for the log.
	Warnings []string          `json:"warnings,omitempty"`
	Origin   map[string]string `json:"origin,omitempty"` // property → source that set it
}

// Value is one property's value and where it came from.
type Value struct {
	Text   string
	Source string
}

// Problem is one thing wrong with the configuration.
type Problem struct {
	Property string
	Source   string
	Message  string
}

func (p Problem) String() string {
	if p.Source != "" {
		return fmt.Sprintf("%s (from %s): %s", p.Property, p.Source, p.Message)
	}
	return fmt.Sprintf("%s: %s", p.Property, p.Message)
}

// ValidationError lists every problem found, not only the first.
type ValidationError struct {
	Problems []Problem
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invalid configuration (%d problem", len(e.Problems))
	if len(e.Problems) != 1 {
		b.WriteString("s")
	}
	b.WriteString("; nothing was changed):")
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

// ErrInvalid is matched by errors.Is for any *ValidationError.
var ErrInvalid = errors.New("invalid configuration")

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// Merge layers property sets, lowest precedence first. An empty value does
// not override (vApp properties left blank at import are empty strings).
func Merge(sets ...Set) map[string]Value {
	out := map[string]Value{}
	for _, s := range sets {
		for k, v := range s.Props {
			if strings.TrimSpace(v) == "" {
				continue
			}
			out[k] = Value{Text: v, Source: s.Source}
		}
	}
	return out
}

// Set is the properties read from one source.
type Set struct {
	Source string
	Props  map[string]string
	// Warnings are what the source carried that was ignored, for the log
	// (an OVF environment's properties the appliance does not know).
	Warnings []string
}

// Validate turns merged properties into a Config, reporting every problem.
func Validate(props map[string]Value) (*Config, error) {
	c := &Config{Mode: DHCP, Origin: map[string]string{}}
	var probs []Problem
	bad := func(prop, format string, a ...any) {
		probs = append(probs, Problem{Property: prop, Source: props[prop].Source, Message: fmt.Sprintf(format, a...)})
	}
	get := func(prop string) (string, bool) {
		v, ok := props[prop]
		if ok {
			c.Origin[prop] = v.Source
		}
		return strings.TrimSpace(v.Text), ok
	}
	names := make([]string, 0, len(props))
	for k := range props {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if _, known := appliance.LookupProperty(k); !known {
			bad(k, "unknown property; known properties are outpost.provision_key, outpost.hostname, outpost.ipv4.*, outpost.dns.*, outpost.ntp.servers, outpost.proxy, outpost.mtu")
		}
	}

	if v, ok := props[appliance.PropProvisionKey]; ok {
		c.Origin[appliance.PropProvisionKey] = v.Source
		// The key may have come through a console, a word processor or an
		// e-mail: Check names each damaged character with its line and
		// column, and repairs only what is safe (surrounding straight
		// quotes, a trailing line break, wrap whitespace).
		r := provkey.Check([]byte(v.Text))
		if r.Valid() {
			c.Key, c.HasKey, c.KeySource = r.Key, true, v.Source
			for _, f := range r.Findings {
				c.Warnings = append(c.Warnings, appliance.PropProvisionKey+" (from "+v.Source+"): "+f.String())
			}
		} else {
			n := 0
			for _, f := range r.Findings {
				if f.Severity == provkey.Error {
					n++
					msg := f.String()
					if f.Fix != "" {
						msg += "; " + f.Fix
					}
					bad(appliance.PropProvisionKey, "%s", msg)
				}
			}
			if n == 0 {
				bad(appliance.PropProvisionKey, "not a provisioning key; paste the key exactly as `outpost keys reveal` printed it")
			}
		}
	}
	if v, ok := get(appliance.PropHostname); ok {
		if err := checkHostname(v); err != nil {
			bad(appliance.PropHostname, "%q: %v", v, err)
		}
		c.Hostname = v
	}
	if v, ok := get(appliance.PropIPv4Mode); ok {
		switch {
		case strings.EqualFold(v, appliance.IPv4ModeDHCP):
			c.Mode = DHCP
		case strings.EqualFold(v, appliance.IPv4ModeStatic):
			c.Mode = Static
		default:
			bad(appliance.PropIPv4Mode, "%q: want %s or %s", v, appliance.IPv4ModeDHCP, appliance.IPv4ModeStatic)
		}
	}
	if v, ok := get(appliance.PropIPv4Address); ok {
		p, err := netip.ParsePrefix(v)
		switch {
		case err != nil:
			bad(appliance.PropIPv4Address, "%q is not an IPv4 address with prefix length, such as 192.0.2.10/24", v)
		case !p.Addr().Is4():
			bad(appliance.PropIPv4Address, "%q is not an IPv4 address", v)
		case p.Bits() < 8 || p.Bits() > 30:
			bad(appliance.PropIPv4Address, "%q: prefix length /%d leaves no room for a host and a gateway; use /8 to /30", v, p.Bits())
		case p.Addr() == p.Masked().Addr():
			bad(appliance.PropIPv4Address, "%q is the network address of its subnet, not a host address", v)
		default:
			c.Address = p
		}
	}
	if v, ok := get(appliance.PropIPv4Gateway); ok {
		a, err := netip.ParseAddr(v)
		switch {
		case err != nil || !a.Is4():
			bad(appliance.PropIPv4Gateway, "%q is not an IPv4 address", v)
		case c.Address.IsValid() && !c.Address.Masked().Contains(a):
			bad(appliance.PropIPv4Gateway, "%s is outside the subnet %s of %s; correct the gateway or the prefix length", a, c.Address.Masked(), appliance.PropIPv4Address)
		case c.Address.IsValid() && a == c.Address.Addr():
			bad(appliance.PropIPv4Gateway, "%s is the appliance's own address", a)
		default:
			c.Gateway = a
		}
	}
	if c.Mode == Static {
		if _, ok := props[appliance.PropIPv4Address]; !ok {
			bad(appliance.PropIPv4Address, "required when %s is Static", appliance.PropIPv4Mode)
		}
		if _, ok := props[appliance.PropDNSServers]; !ok {
			bad(appliance.PropDNSServers, "required when %s is Static (no DHCP server provides them)", appliance.PropIPv4Mode)
		}
	}
	if v, ok := get(appliance.PropDNSServers); ok {
		for _, f := range fields(v) {
			a, err := netip.ParseAddr(f)
			if err != nil {
				bad(appliance.PropDNSServers, "%q is not an IP address", f)
				continue
			}
			c.DNSServers = append(c.DNSServers, a)
		}
	}
	if v, ok := get(appliance.PropDNSSearch); ok {
		for _, f := range fields(v) {
			if err := checkDomain(f); err != nil {
				bad(appliance.PropDNSSearch, "%q: %v", f, err)
				continue
			}
			c.DNSSearch = append(c.DNSSearch, f)
		}
	}
	if v, ok := get(appliance.PropDNSCheckHost); ok {
		if err := checkDomain(v); err != nil {
			bad(appliance.PropDNSCheckHost, "%q: %v", v, err)
		}
		c.DNSCheck = v
	}
	if v, ok := get(appliance.PropNTPServers); ok {
		for _, f := range fields(v) {
			if _, err := netip.ParseAddr(f); err != nil {
				if err := checkDomain(f); err != nil {
					bad(appliance.PropNTPServers, "%q is neither an IP address nor a host name", f)
					continue
				}
			}
			c.NTPServers = append(c.NTPServers, f)
		}
	}
	if v, ok := get(appliance.PropProxy); ok {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(appliance.PropProxy, "%q: want a URL such as http://proxy.example.com:3128", v)
		} else {
			c.Proxy = u.String()
		}
	}
	if v, ok := get(appliance.PropMTU); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 576 || n > 9216 {
			bad(appliance.PropMTU, "%q: want a number from 576 to 9216", v)
		}
		c.MTU = n
	}
	if v, ok := get(appliance.PropAdminSSHKey); ok && v != "" {
		for i, line := range strings.Split(v, "\n") {
			line = strings.TrimSpace(line)
			if line == "" {
				continue
			}
			if err := checkSSHKey(line); err != nil {
				bad(appliance.PropAdminSSHKey, "key %d: %v", i+1, err)
				continue
			}
			c.SSHKeys = append(c.SSHKeys, line)
		}
	}
	if v, ok := get(appliance.PropAdminPasswordHash); ok && v != "" {
		// The message never repeats the value: it may be a password typed
		// where a hash belongs.
		if !cryptRE.MatchString(v) {
			bad(appliance.PropAdminPasswordHash, "not a crypt(3) password hash (want $y$…, $6$… or $5$…); make one with 'mkpasswd -m yescrypt' or 'openssl passwd -6' and give the hash, never the password")
		} else {
			c.PasswordHash = v
		}
	}
	if len(probs) > 0 {
		return nil, &ValidationError{Problems: probs}
	}
	return c, nil
}

// cryptRE accepts the crypt(3) hashes Debian's libcrypt verifies:
// yescrypt, SHA-512, SHA-256, bcrypt and gost-yescrypt.
var cryptRE = regexp.MustCompile(`^\$(y|gy|6|5|2[aby])\$[./A-Za-z0-9$=,]{8,}$`)

var sshKeyTypes = map[string]bool{
	"ssh-ed25519": true, "ssh-rsa": true, "ecdsa-sha2-nistp256": true, "ecdsa-sha2-nistp384": true,
	"ecdsa-sha2-nistp521": true, "sk-ssh-ed25519@openssh.com": true, "sk-ecdsa-sha2-nistp256@openssh.com": true,
}

// checkSSHKey checks one authorized_keys line: TYPE BASE64 [COMMENT].
func checkSSHKey(line string) error {
	f := strings.Fields(line)
	if len(f) < 2 || !sshKeyTypes[f[0]] {
		return fmt.Errorf("not an OpenSSH public key (want a line such as \"ssh-ed25519 AAAA… admin@example\", from a .pub file)")
	}
	b, err := base64.StdEncoding.DecodeString(f[1])
	if err != nil || len(b) < 4 || !strings.Contains(string(b[:min(len(b), 64)]), f[0]) {
		return fmt.Errorf("the %s key's base64 part is damaged; copy the whole line from the .pub file again", f[0])
	}
	return nil
}

// fields splits a list given with commas and/or spaces.
func fields(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == ';' })
}

func checkHostname(s string) error {
	if strings.ContainsAny(s, " \t") {
		return errors.New("a host name cannot contain spaces")
	}
	return checkDomain(s)
}

func checkDomain(s string) error {
	if len(s) > 253 {
		return errors.New("longer than 253 characters")
	}
	for _, label := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if label == "" || len(label) > 63 {
			return errors.New("empty or over-long label (use letters, digits and '-', labels of 1 to 63 characters)")
		}
		for i, c := range label {
			ok := c == '-' && i > 0 && i < len(label)-1 ||
				c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
			if !ok {
				return fmt.Errorf("character %q at position %d is not allowed (use letters, digits and '-')", c, i+1)
			}
		}
	}
	return nil
}
