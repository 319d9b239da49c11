package netconf

import (
	"flag"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/rfc1035label"
)

var update = flag.Bool("update", false, "rewrite testdata/")

func TestLeaseFromACK(t *testing.T) {
	mac := net.HardwareAddr{0, 0x50, 0x56, 0, 0, 0x42}
	ack, err := dhcpv4.New(
		dhcpv4.WithHwAddr(mac),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithYourIP(net.IPv4(10, 77, 0, 94)),
		dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
		dhcpv4.WithRouter(net.IPv4(10, 77, 0, 1)),
		dhcpv4.WithDNS(net.IPv4(10, 77, 0, 1)),
		dhcpv4.WithServerIP(net.IPv4(10, 77, 0, 1)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 77, 0, 1))),
		dhcpv4.WithOption(dhcpv4.OptNTPServers(net.IPv4(10, 77, 0, 2))),
		dhcpv4.WithOption(dhcpv4.OptDomainSearch(&rfc1035label.Labels{Labels: []string{"corp.test", "test"}})),
		dhcpv4.WithLeaseTime(3600),
		dhcpv4.WithOption(dhcpv4.Option{Code: dhcpv4.OptionInterfaceMTU, Value: dhcpv4.Uint16(1400)}),
	)
	if err != nil {
		t.Fatal(err)
	}
	l := leaseFrom(ack)
	if l.Address != netip.MustParsePrefix("10.77.0.94/24") || l.Router.String() != "10.77.0.1" || l.Server.String() != "10.77.0.1" ||
		len(l.DNS) != 1 || len(l.NTP) != 1 || l.NTP[0] != "10.77.0.2" || len(l.Search) != 2 || l.LeaseTime != time.Hour || l.MTU != 1400 {
		t.Errorf("lease = %+v", l)
	}
}

func TestNetworkdFiles(t *testing.T) {
	mac := net.HardwareAddr{0, 0x50, 0x56, 0, 0, 0x42}
	static := &Lease{Address: netip.MustParsePrefix("192.0.2.10/24"), Router: netip.MustParseAddr("192.0.2.1"),
		DNS: []netip.Addr{netip.MustParseAddr("192.0.2.53")}, Search: []string{"corp.example"}, NTP: []string{"192.0.2.123"}}
	for name, got := range map[string][]byte{
		"dhcp.network":     NetworkdFile(mac, nil, 0),
		"static.network":   NetworkdFile(mac, static, 1400),
		"fallback.network": NetworkdFallback("ens192", static, 1400),
	} {
		p := filepath.Join("testdata", name)
		if *update {
			os.MkdirAll("testdata", 0o755)
			os.WriteFile(p, got, 0o644)
		}
		want, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%v (go test -update creates it)", err)
		}
		if string(got) != string(want) {
			t.Errorf("%s differs (go test -update):\n%s", p, got)
		}
	}
}
