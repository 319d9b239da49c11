package connector

import (
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-appliance/outpost/firstboot/enroll"
	"github.com/outpost-appliance/outpost/firstboot/sysroot"
)

// HostFacts reads the machine the agent runs on: the interface's MAC and
// the SMBIOS UUID under Root (for the fingerprint), the interface's
// addresses and /proc/uptime.
type HostFacts struct{ Root sysroot.Root }

// Fingerprint computes the fingerprint as first boot did at enrollment, from
// the MAC the interface has now.
func (h HostFacts) Fingerprint(iface string) (string, error) {
	b, err := h.Root.ReadFile("/sys/class/net/" + iface + "/address")
	if err != nil {
		return "", err
	}
	mac, err := net.ParseMAC(strings.TrimSpace(string(b)))
	if err != nil {
		return "", err
	}
	uuid, _ := h.Root.ReadFile("/sys/class/dmi/id/product_uuid")
	return enroll.Fingerprint(mac, string(uuid))
}

// Addresses lists the interface's global addresses with their prefix.
func (HostFacts) Addresses(iface string) []string {
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return nil
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.IsGlobalUnicast() {
			out = append(out, n.String())
		}
	}
	return out
}

// Uptime is the machine's uptime from /proc/uptime.
func (h HostFacts) Uptime() time.Duration {
	b, err := h.Root.ReadFile("/proc/uptime")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	s, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0
	}
	return time.Duration(s * float64(time.Second))
}
