package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
)

// The lab's network, inside its own namespace: a bridge with the VMs' taps,
// DHCP and DNS (dnsmasq), NTP (chronyd) and the control plane on the
// bridge's address. Nothing routes out of it.
const (
	BridgeIP = "10.88.0.1"
	Subnet   = "10.88.0.0/24"
	CPName   = "cp.lab.test"
	CPPort   = "8443"
	bridge   = "br0"
)

func run(args ...string) error {
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// makeNetwork creates the namespace, its bridge and one tap per VM.
func makeNetwork(ns string, taps []string) error {
	steps := [][]string{
		{"ip", "netns", "add", ns},
		{"ip", "-n", ns, "link", "set", "lo", "up"},
		{"ip", "-n", ns, "link", "add", bridge, "type", "bridge"},
		{"ip", "-n", ns, "addr", "add", BridgeIP + "/24", "dev", bridge},
		{"ip", "-n", ns, "link", "set", bridge, "up"},
	}
	for _, t := range taps {
		steps = append(steps,
			[]string{"ip", "-n", ns, "tuntap", "add", t, "mode", "tap"},
			[]string{"ip", "-n", ns, "link", "set", t, "master", bridge},
			[]string{"ip", "-n", ns, "link", "set", t, "up"})
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			return err
		}
	}
	return nil
}

// removeNetwork deletes the namespace and with it every link in it.
func removeNetwork(ns string) error {
	if _, err := os.Stat(filepath.Join("/run/netns", ns)); os.IsNotExist(err) {
		return nil
	}
	return run("ip", "netns", "del", ns)
}

// startIn starts prog through prefix (which execs it: ip netns exec,
// nsenter, unshare), detached in its own session, its output appended to
// logFile; the returned Proc is what `down` stops.
func startIn(prefix []string, logFile string, prog string, args ...string) (Proc, error) {
	lf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return Proc{}, err
	}
	defer lf.Close()
	full := append(append(append([]string{}, prefix...), prog), args...)
	cmd := exec.Command(full[0], full[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return Proc{}, fmt.Errorf("start %s: %w", prog, err)
	}
	// Reap it if it ends while this process lives; after this process
	// exits, init does.
	go cmd.Wait()
	return waitExec(cmd.Process.Pid, logFile, prog)
}

// waitExec waits until pid runs prog (what a prefix such as ip netns exec
// or nsenter execs), and says so with the end of its log when it exited
// instead.
func waitExec(pid int, logFile, prog string) (Proc, error) {
	comm := filepath.Base(prog)
	if len(comm) > 15 {
		comm = comm[:15] // the kernel's comm length
	}
	p := Proc{PID: pid, Comm: comm}
	for i := 0; i < 250 && !p.alive(); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if !p.alive() {
		b, _ := os.ReadFile(logFile)
		return Proc{}, fmt.Errorf("%s exited at once: %s", prog, strings.TrimSpace(lastLines(string(b), 5)))
	}
	return p, nil
}

// dialIn dials addr from inside the namespace ns.
func dialIn(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() {
			runtime.LockOSThread()
			// The thread is left locked on purpose if switching back
			// fails: Go then retires it rather than reuse it.
			orig, err := netns.Get()
			if err != nil {
				ch <- result{nil, err}
				return
			}
			defer orig.Close()
			h, err := netns.GetFromName(ns)
			if err != nil {
				ch <- result{nil, fmt.Errorf("lab namespace %s: %w", ns, err)}
				return
			}
			defer h.Close()
			if err := netns.Set(h); err != nil {
				ch <- result{nil, err}
				return
			}
			// The control plane's name resolves only inside the lab.
			_, port, _ := net.SplitHostPort(addr)
			c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, net.JoinHostPort(BridgeIP, port))
			if netns.Set(orig) == nil {
				runtime.UnlockOSThread()
			}
			ch <- result{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// bridgeAddr checks that name is a bridge of this machine and returns its
// first IPv4 address: where the VMs on it reach the lab's control plane.
func bridgeAddr(name string) (string, error) {
	if _, err := os.Stat(filepath.Join("/sys/class/net", name, "bridge")); err != nil {
		if _, err := os.Stat(filepath.Join("/sys/class/net", name)); err != nil {
			return "", fmt.Errorf("--bridge %s: no such interface; give the name of a Linux bridge on the LAN (ip -br link show type bridge)", name)
		}
		return "", fmt.Errorf("--bridge %s: not a bridge; give a Linux bridge (ip -br link show type bridge)", name)
	}
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return "", err
	}
	addrs, _ := ifc.Addrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			return n.IP.String(), nil
		}
	}
	return "", fmt.Errorf("--bridge %s has no IPv4 address, so the VMs could not reach a control plane on this machine; give this machine an address on %s, or name another control plane with --config", name, name)
}

// makeTaps adds one tap per VM to a bridge of this machine.
func makeTaps(br string, taps []string) error {
	for _, t := range taps {
		for _, s := range [][]string{{"ip", "tuntap", "add", t, "mode", "tap"}, {"ip", "link", "set", t, "master", br}, {"ip", "link", "set", t, "up"}} {
			if err := run(s...); err != nil {
				return err
			}
		}
	}
	return nil
}

func removeTaps(taps []string) error {
	var errs []error
	for _, t := range taps {
		if _, err := os.Stat(filepath.Join("/sys/class/net", t)); err == nil {
			if err := run("ip", "link", "del", t); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// makeNetworkVia makes the bridge and taps through the holder of the lab
// in dir (root in the lab's own user namespace).
func makeNetworkVia(dir string, taps []string) error {
	steps := [][]string{
		{"ip", "link", "set", "lo", "up"},
		{"ip", "link", "add", bridge, "type", "bridge"},
		{"ip", "addr", "add", BridgeIP + "/24", "dev", bridge},
		{"ip", "link", "set", bridge, "up"},
	}
	for _, t := range taps {
		steps = append(steps, []string{"ip", "tuntap", "add", t, "mode", "tap"},
			[]string{"ip", "link", "set", t, "master", bridge}, []string{"ip", "link", "set", t, "up"})
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		return err
	}
	for _, s := range steps {
		if _, err := ask(dir, holderRequest{Argv: append([]string{ip}, s[1:]...), Wait: true}); err != nil {
			return err
		}
	}
	return nil
}

// userNamespaces reports whether this user may make user and network
// namespaces (what the lab needs without root).
func userNamespaces() error {
	if out, err := exec.Command("unshare", "--user", "--map-root-user", "--net", "true").CombinedOutput(); err != nil {
		return fmt.Errorf("this user cannot make user namespaces (%v: %s); enable them (sysctl kernel.unprivileged_userns_clone=1) or run outpost lab with sudo", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// dialUnix dials the lab's admin socket, whatever address is asked.
func dialUnix(sock string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "unix", sock)
	}
}
