// Package netconf brings up the appliance's primary NIC at first boot: a
// DHCPv4 lease (with NTP servers and the domain search list requested
// explicitly), or a static address, gateway and MTU applied through netlink,
// and the systemd-networkd file that makes later boots come up the same way
// without first boot.
//
// It changes the network namespace it runs in; the tests run it inside a
// namespace they create.
package netconf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
)

// Lease is what a DHCP server gave, or the static configuration.
type Lease struct {
	Address   netip.Prefix  `json:"address"`
	Router    netip.Addr    `json:"router,omitzero"`
	DNS       []netip.Addr  `json:"dns,omitempty"`
	Search    []string      `json:"search,omitempty"`
	NTP       []string      `json:"ntp,omitempty"`
	Server    netip.Addr    `json:"server,omitzero"` // DHCP server
	LeaseTime time.Duration `json:"lease_time,omitempty"`
	MTU       int           `json:"mtu,omitempty"` // option 26, when sent
}

// ErrNoDHCP means no DHCP server answered in time.
var ErrNoDHCP = errors.New("no DHCP server answered")

// PrimaryInterface returns the interface named name, or when name is empty
// the first Ethernet NIC in index order. Chosen on its own it is never a
// software interface (ifb, dummy, bridge, veth, tun/tap, bond, VLAN,
// WireGuard…): those are what a host that is not an appliance has besides
// its NICs, and first boot brings the interface it picks up.
func PrimaryInterface(name string) (*net.Interface, error) {
	if name != "" {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			return nil, fmt.Errorf("interface %s: %w; list interfaces with `ip link`", name, err)
		}
		return ifc, nil
	}
	ifcs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	sort.Slice(ifcs, func(i, j int) bool { return ifcs[i].Index < ifcs[j].Index })
	var skipped []string
	for _, ifc := range ifcs {
		if ifc.Flags&net.FlagLoopback != 0 || len(ifc.HardwareAddr) != 6 {
			continue
		}
		kind, err := LinkKind(ifc.Name)
		if err != nil {
			return nil, err
		}
		if kind != "" {
			skipped = append(skipped, fmt.Sprintf("%s (%s)", ifc.Name, kind))
			continue
		}
		return &ifc, nil
	}
	msg := "no Ethernet interface found"
	if len(skipped) > 0 {
		msg += " (virtual interfaces are never chosen on their own: skipped " + strings.Join(skipped, ", ") + ")"
	}
	return nil, errors.New(msg + "; check that the VM has a NIC (vmxnet3 or virtio), or name one with --interface")
}

// LinkKind returns the kind of software interface ifname is ("dummy",
// "ifb", "bridge", "veth", "tuntap", "bond", "vlan", "wireguard"…), or ""
// for a NIC driven by a device driver. The kernel names a kind
// (IFLA_INFO_KIND) for every link made by a link type rather than found on
// a bus; unlike /sys/class/net/NAME/device it answers for the network
// namespace the caller is in.
func LinkKind(ifname string) (string, error) {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return "", fmt.Errorf("interface %s: %w", ifname, err)
	}
	if _, ok := link.(*netlink.Device); ok {
		return "", nil
	}
	return link.Type(), nil
}

// Up sets the link up and, when mtu > 0, its MTU.
func Up(ifname string, mtu int) error {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("interface %s: %w", ifname, err)
	}
	if mtu > 0 && link.Attrs().MTU != mtu {
		if err := netlink.LinkSetMTU(link, mtu); err != nil {
			return fmt.Errorf("set MTU %d on %s: %w", mtu, ifname, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("bring %s up: %w", ifname, err)
	}
	return nil
}

// DHCP obtains a lease on ifname, trying for at most timeout. It does not
// apply it; call Apply.
func DHCP(ctx context.Context, ifname string, timeout time.Duration) (*Lease, error) {
	if err := Up(ifname, 0); err != nil {
		return nil, err
	}
	per := 2 * time.Second
	tries := max(1, int(timeout/per))
	c, err := nclient4.New(ifname, nclient4.WithTimeout(per), nclient4.WithRetry(tries))
	if err != nil {
		return nil, fmt.Errorf("DHCP on %s: %w", ifname, err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// dnsmasq (and most servers) send options 42 and 119 only when asked.
	l, err := c.Request(ctx, dhcpv4.WithRequestedOptions(
		dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer,
		dhcpv4.OptionDomainName, dhcpv4.OptionNTPServers, dhcpv4.OptionDNSDomainSearchList,
		dhcpv4.OptionInterfaceMTU))
	if err != nil {
		if errors.Is(err, nclient4.ErrNoResponse) || errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("%w on %s within %s: check that the VM's network is connected and has a DHCP server, or set outpost.ipv4.mode=Static with outpost.ipv4.address and outpost.ipv4.gateway", ErrNoDHCP, ifname, timeout)
		}
		return nil, fmt.Errorf("DHCP on %s: %w", ifname, err)
	}
	return leaseFrom(l.ACK), nil
}

func leaseFrom(ack *dhcpv4.DHCPv4) *Lease {
	a, _ := netip.AddrFromSlice(ack.YourIPAddr.To4())
	ones, _ := ack.SubnetMask().Size()
	if ack.SubnetMask() == nil {
		ones = 24
	}
	l := &Lease{Address: netip.PrefixFrom(a, ones), LeaseTime: ack.IPAddressLeaseTime(0)}
	if r := ack.Router(); len(r) > 0 {
		l.Router, _ = netip.AddrFromSlice(r[0].To4())
	}
	for _, ip := range ack.DNS() {
		if x, ok := netip.AddrFromSlice(ip.To4()); ok {
			l.DNS = append(l.DNS, x)
		}
	}
	if ds := ack.DomainSearch(); ds != nil {
		l.Search = append(l.Search, ds.Labels...)
	} else if d := ack.DomainName(); d != "" {
		l.Search = []string{d}
	}
	for _, ip := range ack.NTPServers() {
		l.NTP = append(l.NTP, ip.String())
	}
	l.Server, _ = netip.AddrFromSlice(ack.ServerIdentifier().To4())
	if b := ack.GetOneOption(dhcpv4.OptionInterfaceMTU); len(b) == 2 {
		l.MTU = int(b[0])<<8 | int(b[1])
	}
	return l
}

// Apply puts addr on ifname (replacing addresses of the same family it had)
// and a default route via gw when gw is valid, and sets the MTU when > 0.
func Apply(ifname string, addr netip.Prefix, gw netip.Addr, mtu int) error {
	if err := Up(ifname, mtu); err != nil {
		return err
	}
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("interface %s: %w", ifname, err)
	}
	have, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("addresses of %s: %w", ifname, err)
	}
	want := &netlink.Addr{IPNet: &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), 32)}}
	for _, a := range have {
		if !a.IPNet.IP.Equal(want.IP) || a.IPNet.String() != want.IPNet.String() {
			netlink.AddrDel(link, &a)
		}
	}
	if err := netlink.AddrReplace(link, want); err != nil {
		return fmt.Errorf("add %s to %s: %w", addr, ifname, err)
	}
	if gw.IsValid() {
		route := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw.AsSlice(), Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}}
		if err := netlink.RouteReplace(route); err != nil {
			return fmt.Errorf("default route via %s on %s: %w", gw, ifname, err)
		}
	}
	return nil
}

// NetworkdFile renders a systemd-networkd .network file matched on mac: DHCP
// when static is nil, otherwise the static address, gateway, DNS and domains.
func NetworkdFile(mac net.HardwareAddr, static *Lease, mtu int) []byte {
	return networkdFile("# Written by outpost-firstboot; matched on the MAC because the\n# connector's identity includes it.\n",
		"MACAddress="+mac.String(), static, mtu)
}

// NetworkdFallback renders the same settings matched on the interface's
// name, for a later file name than NetworkdFile's: when the VM's MAC has
// changed (a clone, a MAC edited by hand) the NIC still comes up, so the
// connector can reach the control plane and be told it is blocked, rather
// than vanishing as unreachable.
func NetworkdFallback(ifname string, static *Lease, mtu int) []byte {
	return networkdFile("# Written by outpost-firstboot; used only when the NIC's MAC is not the one\n# the connector enrolled with, so it can report that it is blocked.\n",
		"Name="+ifname, static, mtu)
}

func networkdFile(comment, match string, static *Lease, mtu int) []byte {
	var b strings.Builder
	b.WriteString(comment)
	fmt.Fprintf(&b, "[Match]\n%s\n\n[Link]\n", match)
	if mtu > 0 {
		fmt.Fprintf(&b, "MTUBytes=%d\n", mtu)
	}
	b.WriteString("RequiredForOnline=routable\n\n[Network]\n")
	if static == nil {
		b.WriteString("DHCP=ipv4\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n\n[DHCPv4]\nUseDNS=yes\nUseNTP=yes\nUseDomains=yes\nUseHostname=no\n")
		return []byte(b.String())
	}
	fmt.Fprintf(&b, "Address=%s\n", static.Address)
	if static.Router.IsValid() {
		fmt.Fprintf(&b, "Gateway=%s\n", static.Router)
	}
	for _, d := range static.DNS {
		fmt.Fprintf(&b, "DNS=%s\n", d)
	}
	if len(static.Search) > 0 {
		fmt.Fprintf(&b, "Domains=%s\n", strings.Join(static.Search, " "))
	}
	for _, n := range static.NTP {
		fmt.Fprintf(&b, "NTP=%s\n", n)
	}
	b.WriteString("LinkLocalAddressing=no\nIPv6AcceptRA=no\n")
	return []byte(b.String())
}
