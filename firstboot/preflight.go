package firstboot

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/firstboot/config"
	"github.com/outpost-appliance/outpost/firstboot/enroll"
)

// Check statuses.
const (
	Pass = "pass"
	Warn = "warn"
	Fail = "fail"
	Skip = "skip"
)

// Check is one row of the preflight table.
type Check struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail"`
}

// Facts are the hardware facts preflight checks.
type Facts struct {
	CPUs      int
	MemBytes  uint64 // MemTotal: what the kernel sees, a little under the VM's RAM
	DiskBytes uint64 // size of the disk holding the root
	Vendor    string // SMBIOS sys_vendor
}

const gib = 1 << 30

// Requirements. MemTotal is the RAM minus what the kernel reserves, so the
// thresholds sit a little under 4 and 2 GiB.
const (
	minCPUs = 2
	memFull = 3.5 * gib
	memLab  = 1.75 * gib
	minDisk = 7 * gib // an 8 GiB disk less the ESP and filesystem overhead
)

func (e *Env) facts() (Facts, error) {
	if e.Facts != nil {
		return e.Facts()
	}
	f := Facts{CPUs: runtime.NumCPU(), Vendor: readTrim(e.Root, "/sys/class/dmi/id/sys_vendor")}
	if b, err := e.Root.ReadFile("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) >= 2 && fs[0] == "MemTotal:" {
				kb, _ := strconv.ParseUint(fs[1], 10, 64)
				f.MemBytes = kb * 1024
			}
		}
	}
	f.DiskBytes = diskSize(e.Root.Dir())
	return f, nil
}

// diskSize is the size of the disk holding dir: the whole virtual disk
// (ESP, both roots and data), found through /sys/dev/block, or the size of
// dir's filesystem when that cannot be read.
func diskSize(dir string) uint64 {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err == nil {
		dev := fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
		sizeFile := dev + "/size"
		if _, err := os.Stat(dev + "/partition"); err == nil {
			sizeFile = dev + "/../size"
		}
		if b, err := os.ReadFile(sizeFile); err == nil {
			if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 {
				return n * 512
			}
		}
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err == nil {
		return sfs.Blocks * uint64(sfs.Bsize)
	}
	return 0
}

// checks runs the preflight table for configuration c, with the network
// and clock the earlier stages left.
func (s preflightStage) checks(ctx context.Context, c *config.Config, n Networking, clock func() time.Time) []Check {
	var checks []Check
	add := func(name, status, format string, a ...any) {
		checks = append(checks, Check{Name: name, Status: status, Detail: fmt.Sprintf(format, a...)})
	}
	f, err := s.facts()
	if err != nil {
		add("hardware", Fail, "%v", err)
	} else {
		if f.CPUs >= minCPUs {
			add("vCPU", Pass, "%d", f.CPUs)
		} else {
			add("vCPU", Fail, "%d; at least %d are required: raise the VM's CPU count", f.CPUs, minCPUs)
		}
		mem := fmt.Sprintf("%.1f GiB", float64(f.MemBytes)/gib)
		switch {
		case f.MemBytes >= memFull:
			add("memory", Pass, "%s", mem)
		case f.MemBytes >= memLab:
			add("memory", Warn, "%s: lab only, unsupported; give the VM 4 GiB for production", mem)
		default:
			add("memory", Fail, "%s; at least 4 GiB are required (2 GiB for a lab)", mem)
		}
		disk := fmt.Sprintf("%.1f GiB", float64(f.DiskBytes)/gib)
		if f.DiskBytes >= minDisk {
			add("disk", Pass, "%s", disk)
		} else {
			add("disk", Fail, "%s; the appliance needs an 8 GiB disk", disk)
		}
		onVMware := strings.Contains(strings.ToLower(f.Vendor), "vmware")
		mac := strings.ToLower(n.MAC)
		switch {
		case !onVMware:
			add("static MAC", Pass, "%s (not on VMware: no manual range applies)", mac)
		case inManualRange(mac):
			add("static MAC", Pass, "%s (VMware manual range)", mac)
		default:
			add("static MAC", Fail, "%s is not in VMware's manual range %s; set a manual MAC on the NIC (the connector's identity includes it)", mac, appliance.MACRange)
		}
	}

	k := c.Key
	host, port, err := net.SplitHostPort(k.Host)
	if err != nil {
		host, port = strings.Trim(k.Host, "[]"), "443"
	}
	servers := n.DNS
	route := s.route(servers)
	var addrs []string
	if ip := net.ParseIP(host); ip != nil {
		addrs = []string{ip.String()}
		add("DNS", Pass, "%s is an address", host)
	} else {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		addrs, err = route.LookupHost(rctx, host)
		cancel()
		if err != nil {
			add("DNS", Fail, "%s does not resolve with %v: %v; check the DNS servers and that they resolve external names", host, servers, unwrapDNS(err))
		} else {
			add("DNS", Pass, "%s → %s", host, strings.Join(addrs, ", "))
		}
	}
	if c.DNSCheck != "" {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		a, err := route.LookupHost(rctx, c.DNSCheck)
		cancel()
		if err != nil {
			add("DNS (internal)", Fail, "%s does not resolve: %v; the connector must resolve internal names", c.DNSCheck, unwrapDNS(err))
		} else {
			add("DNS (internal)", Pass, "%s → %s", c.DNSCheck, strings.Join(a, ", "))
		}
	}
	target := ""
	via := ""
	if c.Proxy != "" {
		// Through the proxy: TCP to the proxy, then CONNECT; the pin check
		// below still runs end to end with the control plane.
		u, err := url.Parse(c.Proxy)
		if err != nil {
			add("TCP "+port, Fail, "proxy %s: %v", c.Proxy, err)
			return checks
		}
		target = u.Host
		if u.Port() == "" {
			p := "80"
			if u.Scheme == "https" {
				p = "443"
			}
			target = net.JoinHostPort(u.Hostname(), p)
		}
		via = " via proxy " + target
	} else if len(addrs) == 0 {
		add("TCP "+port, Skip, "no address for %s", host)
		add("TLS pin", Skip, "no address for %s", host)
		return checks
	} else {
		target = net.JoinHostPort(addrs[0], port)
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := route.DialAddr(dctx, "tcp", target)
	if err == nil && via != "" {
		err = enroll.Connect(dctx, conn, net.JoinHostPort(host, port))
	}
	cancel()
	if err != nil {
		if conn != nil {
			conn.Close()
		}
		add("TCP "+port, Fail, "%s (%s)%s: %v; allow outbound TCP %s to the control plane", host, target, via, err, port)
		add("TLS pin", Skip, "no connection")
		return checks
	}
	add("TCP "+port, Pass, "%s (%s) reachable%s", host, target, via)
	// The handshake alone, without sending anything: the key is only sent
	// by enrollment, over a connection that passed this same check.
	tc := tls.Client(conn, enroll.PinnedTLS(k.Host, k.Pin, clock))
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = tc.HandshakeContext(hctx)
	cancel()
	tc.Close()
	var ie *enroll.InterceptionError
	switch {
	case errors.As(err, &ie):
		add("TLS pin", Fail, "%v", ie)
	case err != nil:
		add("TLS pin", Fail, "%s: %v", host, err)
	default:
		add("TLS pin", Pass, "%s presents the control plane CA (%s)", host, k.Pin.String()[:19]+"…")
	}
	return checks
}

// inManualRange reports whether mac, as the kernel shows it, is in VMware's
// manual range.
func inManualRange(mac string) bool {
	_, err := appliance.ParseMAC(mac)
	return err == nil
}

func unwrapDNS(err error) error {
	var de *net.DNSError
	if errors.As(err, &de) {
		return errors.New(de.Err)
	}
	return err
}
