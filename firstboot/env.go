package firstboot

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/beevik/ntp"

	"github.com/outpost-appliance/outpost/firstboot/config"
	"github.com/outpost-appliance/outpost/firstboot/enroll"
	"github.com/outpost-appliance/outpost/firstboot/netconf"
	"github.com/outpost-appliance/outpost/firstboot/sysroot"
	"github.com/outpost-appliance/outpost/firstboot/vmtools"
)

// Env is everything the stages touch outside their own logic: the root, the
// network, the clock, the host. Zero fields get the real implementation,
// except where noted; tests replace them. Stages(env) hands each stage only
// the seams it uses.
type Env struct {
	Root       sysroot.Root
	Interface  string // --interface; empty picks the first Ethernet NIC
	ConfigFile string // --config, a host path
	Log        *slog.Logger

	// Config loads the configuration; default is config.Loader under Root.
	Config func(ctx context.Context) (*config.Config, error)
	// KeyWait is how long to wait for a provisioning key to appear before
	// giving up with ErrNoKey; 0 does not wait.
	KeyWait time.Duration

	Net         Network
	DHCPTimeout time.Duration // default 30s

	// Now is the system clock; SetClock steps it. When SetClock is nil the
	// clock is not touched and a correction is applied to certificate checks
	// instead (the default under a --root other than "/").
	Now         func() time.Time
	SetClock    func(time.Time) error
	SetHostname func(string) error // nil: only /etc/hostname is written
	// Systemctl runs systemctl (enabling SSH); nil under a --root other
	// than "/", where only the unit symlinks are written.
	Systemctl func(ctx context.Context, args ...string) error
	NTPQuery  func(host string, opt ntp.QueryOptions) (*ntp.Response, error)

	// Resolver returns a resolver that asks servers; default
	// enroll.ResolverFor, the Go resolver dialling them directly, so it
	// works before resolv.conf exists.
	Resolver func(servers []netip.Addr) *net.Resolver
	Dial     func(ctx context.Context, network, addr string) (net.Conn, error)

	// Facts are the hardware facts preflight checks; default reads Root.
	Facts func() (Facts, error)
	// Rand is the source for the key pair and nonce (default crypto/rand).
	Rand io.Reader
	// Sleep is the enrollment backoff's wait; default a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// EnrollAttempts bounds enrollment requests; 0 retries until ctx ends.
	EnrollAttempts int
	// RPCTool runs vmware-rpctool: the configuration loader reads
	// guestinfo.ovfEnv and the report sets guestinfo.outpost.status through
	// it. nil skips the status; the loader then looks the tool up itself
	// when the root is the host's.
	RPCTool vmtools.RPC

	// Crash is a test hook called at named points of a run ("network:start",
	// "network:done", "enroll:identity-saved", "enroll:response",
	// "enroll:cert-stored", …) so a test can kill the real process there;
	// nil in normal runs.
	Crash func(point string)
}

func (e *Env) crash(point string) {
	if e.Crash != nil {
		e.Crash(point)
	}
}

// Network is the part of the host's networking first boot changes.
type Network interface {
	Primary(name string) (*net.Interface, error)
	DHCP(ctx context.Context, ifname string, timeout time.Duration) (*netconf.Lease, error)
	Apply(ifname string, addr netip.Prefix, gw netip.Addr, mtu int) error
	// Has reports whether ifname carries addr now.
	Has(ifname string, addr netip.Prefix) bool
}

// HostNetwork is Network on the namespace the process runs in.
type HostNetwork struct{}

func (HostNetwork) Primary(name string) (*net.Interface, error) {
	return netconf.PrimaryInterface(name)
}
func (HostNetwork) DHCP(ctx context.Context, ifname string, timeout time.Duration) (*netconf.Lease, error) {
	return netconf.DHCP(ctx, ifname, timeout)
}
func (HostNetwork) Apply(ifname string, addr netip.Prefix, gw netip.Addr, mtu int) error {
	return netconf.Apply(ifname, addr, gw, mtu)
}

func (HostNetwork) Has(ifname string, addr netip.Prefix) bool {
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return false
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.String() == addr.String() {
			return true
		}
	}
	return false
}

func (e *Env) log() *slog.Logger {
	if e.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.Log
}

func (e *Env) now() time.Time {
	if e.Now == nil {
		return time.Now()
	}
	return e.Now()
}

func (e *Env) loadConfig(ctx context.Context) (*config.Config, error) {
	if e.Config != nil {
		return e.Config(ctx)
	}
	c, _, err := config.Loader{Root: e.Root, Extra: e.ConfigFile, RPCTool: e.RPCTool}.Load(ctx)
	return c, err
}

// route is the way to the control plane over the DNS servers the network
// stage resolved, for preflight and enrollment alike.
func (e *Env) route(dns []netip.Addr) enroll.Route {
	r := enroll.Route{Dial: e.Dial}
	if e.Resolver != nil {
		r.Resolver = e.Resolver(dns)
	} else {
		r.Resolver = enroll.ResolverFor(dns)
	}
	return r
}

func (e *Env) network() Network {
	if e.Net == nil {
		return HostNetwork{}
	}
	return e.Net
}

func readTrim(root sysroot.Root, name string) string {
	b, err := root.ReadFile(name)
	if err != nil {
		return ""
	}
	return string(trimSpace(b))
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
