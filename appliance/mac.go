package appliance

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"strings"
)

// MAC is a 48-bit Ethernet address inside VMware's manual range.
//
// Every appliance NIC carries a manual MAC in VMware's manual range
// 00:50:56:00:00:00–00:50:56:3F:FF:FF, because the connector's hardware
// fingerprint includes it: ESXi keeps a manual MAC across moves and
// re-registration, whereas a generated one may change. This package does not
// track which MACs are in use; callers that deploy several appliances refuse
// duplicates themselves.
type MAC [6]byte

// MACRange is VMware's manual MAC range, as people write it in messages.
const MACRange = "00:50:56:00:00:00–00:50:56:3F:FF:FF"

// vmwareOUI is the OUI of VMware's manual range; the fourth octet is at most
// 0x3F.
var vmwareOUI = [3]byte{0x00, 0x50, 0x56}

const maxFourth = 0x3F

// ErrInvalidMAC is wrapped by every refusal of ParseMAC, for callers that
// branch on it.
var ErrInvalidMAC = errors.New("invalid MAC address")

// ParseMAC reads a MAC written as six hex octets separated by ':' or '-'
// (00:50:56:12:34:56) and checks that it is a unicast address in VMware's
// manual range. Refusals say what is wrong and give the valid range.
func ParseMAC(s string) (MAC, error) {
	var m MAC
	t := strings.TrimSpace(s)
	if t == "" {
		return m, fmt.Errorf("%w: empty; give six hex octets in %s, e.g. 00:50:56:00:12:34", ErrInvalidMAC, MACRange)
	}
	hw, err := net.ParseMAC(t)
	if err != nil || len(hw) != 6 {
		return m, fmt.Errorf("%w %q: not six hex octets separated by ':' (e.g. 00:50:56:00:12:34); valid range %s", ErrInvalidMAC, s, MACRange)
	}
	copy(m[:], hw)
	if err := m.Validate(); err != nil {
		return MAC{}, err
	}
	return m, nil
}

// Validate reports whether m is a unicast address inside the manual range.
func (m MAC) Validate() error {
	if m[0]&1 != 0 {
		return fmt.Errorf("%w %s: multicast (the low bit of the first octet is set); a NIC needs a unicast address in %s", ErrInvalidMAC, m, MACRange)
	}
	if [3]byte{m[0], m[1], m[2]} != vmwareOUI {
		return fmt.Errorf("%w %s: outside VMware's manual range %s (the address must start with 00:50:56)", ErrInvalidMAC, m, MACRange)
	}
	if m[3] > maxFourth {
		return fmt.Errorf("%w %s: outside VMware's manual range %s (the fourth octet must be 00–3F; 40–FF are reserved for vCenter and ESXi)", ErrInvalidMAC, m, MACRange)
	}
	return nil
}

// DeriveMAC returns a MAC in the manual range computed from name alone, so the
// same appliance or VM name always gets the same address. The 22 free bits
// come from SHA-256 of the name; distinct names can collide (about one pair
// in 2^11 among 2^11 names), which is why deployers still check for
// duplicates.
func DeriveMAC(name string) MAC {
	sum := sha256.Sum256([]byte("outpost-mac\x00" + name))
	return MAC{vmwareOUI[0], vmwareOUI[1], vmwareOUI[2], sum[0] & maxFourth, sum[1], sum[2]}
}

// String formats m as lower-case colon-separated hex, the form OVF and
// vSphere use.
func (m MAC) String() string {
	return net.HardwareAddr(m[:]).String()
}

// MarshalText implements encoding.TextMarshaler.
func (m MAC) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseMAC's checks.
func (m *MAC) UnmarshalText(b []byte) error {
	v, err := ParseMAC(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}
