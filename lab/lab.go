// Package lab runs a control plane and N connector appliances under QEMU on
// one machine (`outpost lab`): for homelabs, for the demo and for outpost's
// own tests. `up` makes an isolated network (a namespace with a bridge,
// DHCP, DNS and NTP), starts the control plane there, creates a group and a
// key with exactly N uses, starts each VM on a qcow2 overlay of the one
// base image with its own static MAC and its key through fw_cfg, and waits
// until every VM is healthy. The lab's state lives in its directory, so
// `status`, `console`, `stop`, `start` and `down` from another shell find
// it; `down` stops every process the lab started, by PID, and removes the
// overlays and the namespace, keeping the base image.
//
// As root the network is a named network namespace; without root it is a
// user namespace of the lab's own (root inside, this user outside) with a
// network namespace, kept by a holder process that starts what the lab asks
// for in it and carries the admin API to a Unix socket; with --bridge the
// VMs join a LAN bridge of the machine. It does not build images itself
// (package imagebuild does) or run VMs itself (package qemu does).
package lab

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/cpclient"
	"github.com/outpost-appliance/outpost/qemu"
)

// Options of Up.
type Options struct {
	// Dir holds the lab's state, VMs and control plane; DefaultDir() when
	// empty.
	Dir   string
	Count int // VMs; default 2
	// Image is the appliance's qcow2; required (the CLI builds one when
	// none is given).
	Image     string
	MemoryMiB int // per VM; default appliance.DefaultMemoryMiB
	// Key is a provisioning key to use instead of creating one; it must
	// name the lab's control plane (cp.lab.test:8443).
	Key string
	// Outpost is the outpost binary the control plane runs from; default
	// this executable.
	Outpost string
	// Progress receives a line per VM whenever its phase or step changes.
	Progress io.Writer
	// Timeout bounds the wait for every VM to be healthy; default 10 min.
	Timeout time.Duration
	// Accel overrides the accelerator ("kvm" or "tcg"); default qemu.Probe.
	Accel qemu.Accel
	// Bridge puts the VMs' taps on this Linux bridge of the machine, a
	// real LAN, which gives them DHCP, DNS and NTP; the lab's control plane
	// then listens on the bridge's address.
	Bridge string
	// Config is the admin.conf of another control plane to use instead of
	// starting one; only with Bridge (the lab's own network reaches
	// nothing else).
	Config string
}

// DefaultDir is $XDG_DATA_HOME/outpost/lab, or ~/.local/share/outpost/lab.
func DefaultDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "outpost", "lab")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = os.TempDir()
	}
	return filepath.Join(home, ".local", "share", "outpost", "lab")
}

// Check refuses what would fail later, before anything starts: not root,
// QEMU or OVMF missing, too little memory.
func Check(count, memoryMiB int) error {
	if err := qemu.Check(); err != nil {
		return err
	}
	tools := []struct{ name, pkg string }{{"ip", "iproute2"}, {"dnsmasq", "dnsmasq-base"}, {"chronyd", "chrony"}}
	if os.Geteuid() != 0 {
		// Without root the lab lives in a user namespace of its own.
		tools = append(tools, struct{ name, pkg string }{"unshare", "util-linux"})
	}
	for _, tool := range tools {
		if _, err := lookPath(tool.name); err != nil {
			return fmt.Errorf("%s is missing; install the Debian package %s", tool.name, tool.pkg)
		}
	}
	if os.Geteuid() != 0 {
		if err := userNamespaces(); err != nil {
			return err
		}
	}
	avail, err := memAvailableMiB()
	if err == nil {
		need := count*memoryMiB + 512
		if avail < need {
			return fmt.Errorf("too little free memory for %d VMs of %d MiB: %d MiB needed (with 512 MiB for the control plane and QEMU), %d MiB available; use --count or --memory %d (lab only)",
				count, memoryMiB, need, avail, appliance.LabMemoryMiB)
		}
	}
	return nil
}

func memAvailableMiB() (int, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 2 && fs[0] == "MemAvailable:" {
			kb, err := strconv.Atoi(fs[1])
			return kb / 1024, err
		}
	}
	return 0, errors.New("no MemAvailable in /proc/meminfo")
}

// nsName is the lab's namespace, derived from its directory so two labs
// in two directories do not meet.
func nsName(dir string) string {
	sum := sha256.Sum256([]byte(dir))
	return "olab-" + hex.EncodeToString(sum[:4])
}

// Up starts the lab in o.Dir and waits until every VM is healthy.
func Up(ctx context.Context, o Options) (*Status, error) {
	if o.Count == 0 {
		o.Count = 2
	}
	if o.MemoryMiB == 0 {
		o.MemoryMiB = appliance.DefaultMemoryMiB
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Minute
	}
	if o.Dir == "" {
		o.Dir = DefaultDir()
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	if o.Count < 1 || o.Count > 20 {
		return nil, fmt.Errorf("--count %d: a lab has 1 to 20 VMs", o.Count)
	}
	if _, err := os.Stat(filepath.Join(dir, StateFile)); err == nil {
		return nil, fmt.Errorf("a lab is already up in %s; see 'outpost lab status --dir %s', or stop it with 'outpost lab down --dir %s'", dir, dir, dir)
	}
	if o.Config != "" && o.Bridge == "" {
		return nil, errors.New("--config: a control plane outside the lab is reachable only from a real LAN; add --bridge NAME, or leave --config out and the lab starts its own")
	}
	if o.Bridge != "" && os.Geteuid() != 0 {
		return nil, fmt.Errorf("--bridge %s needs root: it adds a tap per VM to the bridge; run it with sudo", o.Bridge)
	}
	if err := Check(o.Count, o.MemoryMiB); err != nil {
		return nil, err
	}
	if o.Image == "" {
		return nil, errors.New("no appliance image given")
	}
	image, err := filepath.Abs(o.Image)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(image); err != nil {
		return nil, fmt.Errorf("appliance image: %w", err)
	}
	if o.Outpost == "" {
		if o.Outpost, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	accel := o.Accel
	if accel == "" {
		accel = qemu.Probe(ctx)
	}
	say := func(format string, a ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, format+"\n", a...)
		}
	}
	if accel == "kvm" {
		say("lab: accelerator KVM (/dev/kvm works)")
	} else {
		say("lab: accelerator TCG (no working /dev/kvm: VMs are emulated, a boot takes about 20 s)")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	st := &State{Version: StateVersion, Dir: dir, Namespace: nsName(dir), Bridge: bridge, Accel: string(accel), Image: image,
		ControlPlane: CPName + ":" + CPPort, Created: time.Now().UTC()}
	var hostAddr string
	if o.Bridge != "" {
		st.Namespace, st.Bridge = "", o.Bridge
		if hostAddr, err = bridgeAddr(o.Bridge); err != nil && o.Config == "" {
			return nil, err
		}
		st.ControlPlane = hostAddr + ":" + CPPort
		if o.Config == "" {
			if ln, err := net.Listen("tcp", st.ControlPlane); err != nil {
				return nil, fmt.Errorf("the lab's control plane cannot listen on %s: %v; stop what uses port %s (ss -ltnp 'sport = :%s'), or name another control plane with --config", st.ControlPlane, err, CPPort, CPPort)
			} else {
				ln.Close()
			}
		}
	} else if os.Geteuid() != 0 {
		st.Namespace = ""
	} else if _, err := os.Stat(filepath.Join("/run/netns", st.Namespace)); err == nil {
		return nil, fmt.Errorf("the lab's network namespace %s already exists (a lab in %s that lost its state?); remove it with 'ip netns del %s'", st.Namespace, dir, st.Namespace)
	}
	ok := false
	defer func() {
		if !ok {
			st.teardown(true)
		}
	}()
	var taps []string
	for i := 1; i <= o.Count; i++ {
		if st.Bridge != bridge {
			// In the machine's own namespace: names unique to this lab.
			taps = append(taps, fmt.Sprintf("%st%d", strings.TrimPrefix(nsName(dir), "olab-"), i))
		} else {
			taps = append(taps, fmt.Sprintf("tap%d", i))
		}
	}
	for i, t := range taps {
		st.VMs = append(st.VMs, VMState{Name: fmt.Sprintf("vm%d", i+1), Tap: t})
	}
	switch {
	case st.Bridge != bridge:
		err = makeTaps(st.Bridge, taps)
	case st.Namespace != "":
		err = makeNetwork(st.Namespace, taps)
	default:
		// No root: a user namespace (root inside, this user outside) with
		// a network namespace, kept by a process that only waits.
		st.Holder, err = startHolder(st.Dir, o.Outpost)
		if err == nil {
			if err = st.save(); err == nil {
				err = makeNetworkVia(st.Dir, taps)
			}
		}
	}
	if err != nil {
		return nil, err
	}
	if err := st.save(); err != nil {
		return nil, err
	}
	switch {
	case o.Config != "":
		st.External, st.AdminConf = true, o.Config
	case st.Bridge != bridge:
		data := filepath.Join(st.Dir, "cp")
		if err := os.MkdirAll(data, 0o700); err != nil {
			return nil, err
		}
		st.AdminConf = filepath.Join(data, "admin.conf")
		if st.Server, err = startIn(nil, filepath.Join(st.Dir, "server.log"), o.Outpost, "server", "--data", data,
			"--listen", st.ControlPlane, "--hostname", st.ControlPlane); err != nil {
			return nil, err
		}
	default:
		if err := st.startServices(o.Outpost); err != nil {
			return nil, err
		}
	}
	if err := st.save(); err != nil {
		return nil, err
	}
	cl, err := st.client()
	if err != nil {
		return nil, err
	}
	if err := waitServer(ctx, cl); err != nil {
		return nil, err
	}
	key := o.Key
	st.Group, st.Key = "lab", "Lab"
	if key == "" {
		if _, err := cl.CreateGroup(ctx, cpapi.GroupSpec{Name: st.Group, Location: ptr("outpost lab " + dir)}); err != nil && !cpapi.IsCode(err, cpapi.CodeExists) {
			return nil, err
		}
		kt, err := cl.CreateKey(ctx, cpapi.KeySpec{Name: st.Key, Group: st.Group, MaxUses: int64(o.Count)})
		if err != nil {
			return nil, err
		}
		key = kt.Text
	}
	keyFile := filepath.Join(dir, "fwcfg.conf")
	if err := os.WriteFile(keyFile, []byte(appliance.PropProvisionKey+"="+key+"\n"), 0o600); err != nil {
		return nil, err
	}
	if o.MemoryMiB < appliance.DefaultMemoryMiB {
		say("lab: warning: %d MiB per VM is for labs only; production connectors need %d MiB", o.MemoryMiB, appliance.DefaultMemoryMiB)
	}
	seen := map[string]string{}
	for i := range st.VMs {
		v := &st.VMs[i]
		v.MAC = appliance.DeriveMAC(nsName(dir) + "/" + v.Name).String()
		v.Dir, v.MemoryMiB = filepath.Join(dir, v.Name), o.MemoryMiB
		if other, dup := seen[v.MAC]; dup {
			return nil, fmt.Errorf("VMs %s and %s derive the same MAC %s; use another --dir", other, v.Name, v.MAC)
		}
		seen[v.MAC] = v.Name
	}
	for i := range st.VMs {
		if err := st.startVM(ctx, i); err != nil {
			return nil, err
		}
	}
	if err := st.save(); err != nil {
		return nil, err
	}
	switch {
	case st.Bridge != bridge:
		say("lab: %d VMs starting on bridge %s; control plane %s; lab directory %s", o.Count, st.Bridge, st.ControlPlane, dir)
	case st.Namespace != "":
		say("lab: %d VMs starting; control plane %s in namespace %s; lab directory %s", o.Count, st.ControlPlane, st.Namespace, dir)
	default:
		say("lab: %d VMs starting; control plane %s in the lab's own user namespace (no root); lab directory %s", o.Count, st.ControlPlane, dir)
	}
	status, err := st.waitHealthy(ctx, cl, o.Timeout, o.Progress)
	if err != nil {
		return status, err
	}
	ok = true
	return status, st.save()
}

func ptr[T any](v T) *T { return &v }

// start runs prog in the lab's network: through the holder without root,
// else through prefix.
func (st *State) start(logFile, prog string, args ...string) (Proc, error) {
	if st.Holder.PID != 0 {
		return startVia(st.Dir, logFile, prog, args...)
	}
	return startIn(st.prefix(), logFile, prog, args...)
}

func (st *State) startServices(outpost string) error {
	var err error
	leases := filepath.Join(st.Dir, "dnsmasq.leases")
	user := []string{}
	if st.Holder.PID != 0 {
		user = []string{"--user=", "--group="} // stay root: "nobody" and "dip" do not exist in the lab's user namespace
	}
	st.Dnsmasq, err = st.start(filepath.Join(st.Dir, "dnsmasq.log"), "dnsmasq", append(user, "--keep-in-foreground", "--no-ping",
		"--conf-file=/dev/null", "--interface="+bridge, "--bind-interfaces", "--no-resolv", "--no-hosts",
		"--host-record="+CPName+","+BridgeIP, "--dhcp-leasefile="+leases, "--pid-file=",
		"--dhcp-range=10.88.0.50,10.88.0.250,255.255.255.0,12h", "--dhcp-option=option:router,"+BridgeIP,
		"--dhcp-option=option:dns-server,"+BridgeIP, "--dhcp-option=option:ntp-server,"+BridgeIP,
		"--dhcp-option=option:domain-search,lab.test", "--log-facility=-")...)
	if err != nil {
		return err
	}
	conf := filepath.Join(st.Dir, "chrony.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("allow %s\nlocal stratum 8\npidfile %s\ncmdport 0\nbindcmdaddress /\ndriftfile %s\n",
		Subnet, filepath.Join(st.Dir, "chronyd.pid"), filepath.Join(st.Dir, "chrony.drift"))), 0o600); err != nil {
		return err
	}
	if st.Chronyd, err = st.start(filepath.Join(st.Dir, "chronyd.log"), "chronyd", "-f", conf, "-x", "-d", "-u", "root"); err != nil {
		return err
	}
	data := filepath.Join(st.Dir, "cp")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return err
	}
	st.AdminConf = filepath.Join(data, "admin.conf")
	st.Server, err = st.start(filepath.Join(st.Dir, "server.log"), outpost, "server", "--data", data,
		"--listen", BridgeIP+":"+CPPort, "--hostname", CPName+":"+CPPort)
	if err != nil {
		return err
	}
	if st.Holder.PID != 0 {
		// The holder carries the admin API to a Unix socket in the lab's
		// directory: sockets on a file system cross namespaces.
		st.Socket = filepath.Join(st.Dir, adminSocket)
	}
	return st.save()
}

// client talks to the lab's control plane from this namespace.
func (st *State) client() (*cpclient.Client, error) {
	var cfg cpclient.Config
	var err error
	for i := 0; i < 100; i++ {
		if cfg, err = cpclient.LoadConfig(st.AdminConf); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return nil, fmt.Errorf("the lab's control plane wrote no admin.conf (see %s): %w", filepath.Join(st.Dir, "server.log"), err)
	}
	switch {
	case st.Namespace != "":
		return cpclient.New(cfg, cpclient.WithDialer(dialIn(st.Namespace)))
	case st.Socket != "":
		return cpclient.New(cfg, cpclient.WithDialer(dialUnix(st.Socket)))
	}
	return cpclient.New(cfg)
}

func waitServer(ctx context.Context, cl *cpclient.Client) error {
	var err error
	for i := 0; i < 100; i++ {
		if _, err = cl.Groups(ctx); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("the lab's control plane does not answer: %w", err)
}

func (st *State) startVM(ctx context.Context, i int) error {
	v := &st.VMs[i]
	cfg, argv, err := qemu.Prepare(ctx, qemu.Config{
		Name: v.Name, Base: st.Image, Dir: v.Dir, MemoryMiB: v.MemoryMiB, MAC: v.MAC, Tap: v.Tap,
		FwCfg: map[string]string{"opt/outpost/config": filepath.Join(st.Dir, "fwcfg.conf")}, Accel: qemu.Accel(st.Accel),
	})
	if err != nil {
		return err
	}
	if v.Proc, err = st.start(filepath.Join(cfg.Dir, "qemu.log"), argv[0], argv[1:]...); err != nil {
		return fmt.Errorf("%s: %w", v.Name, err)
	}
	v.Started = time.Now().UTC()
	return nil
}

// Down stops everything the lab in dir started, by PID, and removes its
// overlays, taps and namespace. The base image stays.
func Down(dir string) error {
	dir, _ = filepath.Abs(dir)
	st, err := loadState(dir)
	if err != nil {
		return err
	}
	return st.teardown(false)
}

func (st *State) teardown(keepLogs bool) error {
	for _, v := range st.VMs {
		v.Proc.stop(3 * time.Second)
	}
	for _, p := range []Proc{st.Server, st.Dnsmasq, st.Chronyd, st.Holder} {
		p.stop(5 * time.Second)
	}
	var errs []error
	switch {
	case st.Holder.PID != 0:
		// The namespaces ended with their last process.
		os.Remove(filepath.Join(st.Dir, adminSocket))
		os.Remove(filepath.Join(st.Dir, holderSocket))
		os.Remove(filepath.Join(st.Dir, "holder.log"))
	case st.Bridge != bridge:
		var taps []string
		for _, v := range st.VMs {
			taps = append(taps, v.Tap)
		}
		if err := removeTaps(taps); err != nil {
			errs = append(errs, err)
		}
	default:
		if err := removeNetwork(st.Namespace); err != nil {
			errs = append(errs, err)
		}
	}
	for _, v := range st.VMs {
		if keepLogs {
			os.Remove(filepath.Join(v.Dir, qemu.OverlayFile))
			continue
		}
		if err := os.RemoveAll(v.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	if !keepLogs {
		for _, f := range []string{"cp", "fwcfg.conf", "chrony.conf", "chronyd.pid", "chrony.drift", "dnsmasq.leases", "dnsmasq.log", "chronyd.log", "server.log", StateFile} {
			os.RemoveAll(filepath.Join(st.Dir, f))
		}
	} else {
		os.Remove(filepath.Join(st.Dir, StateFile))
	}
	return errors.Join(errs...)
}

// find returns the VM called name: the lab's name (vm1) or the connector's
// (Lab-1).
func (st *State) find(ctx context.Context, name string) (int, error) {
	for i, v := range st.VMs {
		if v.Name == name {
			return i, nil
		}
	}
	if cl, err := st.client(); err == nil {
		if cs, err := cl.Connectors(ctx, ""); err == nil {
			for _, c := range cs {
				if c.Name == name {
					for i, v := range st.VMs {
						if strings.Contains(c.Fingerprint, "mac="+v.MAC) {
							return i, nil
						}
					}
				}
			}
		}
	}
	var names []string
	for _, v := range st.VMs {
		names = append(names, v.Name)
	}
	return 0, fmt.Errorf("no VM %q in the lab in %s; its VMs are %s (or their connector names, see 'outpost lab status')", name, st.Dir, strings.Join(names, ", "))
}

// openVM reads the lab in dir and finds its VM called name.
func openVM(ctx context.Context, dir, name string) (*State, int, error) {
	dir, _ = filepath.Abs(dir)
	st, err := loadState(dir)
	if err != nil {
		return nil, 0, err
	}
	i, err := st.find(ctx, name)
	return st, i, err
}

// Stop powers a VM off (a failure drill): the control plane shows it
// unreachable after three missed heartbeats.
func Stop(ctx context.Context, dir, name string) error {
	st, i, err := openVM(ctx, dir, name)
	if err != nil {
		return err
	}
	if !st.VMs[i].Proc.alive() {
		return fmt.Errorf("%s is already stopped; start it with 'outpost lab start %s'", name, name)
	}
	st.VMs[i].Proc.stop(3 * time.Second)
	return st.save()
}

// Start powers a stopped VM on again, on its own disk: it is the same
// connector, enrolled once.
func Start(ctx context.Context, dir, name string) error {
	st, i, err := openVM(ctx, dir, name)
	if err != nil {
		return err
	}
	if st.VMs[i].Proc.alive() {
		return fmt.Errorf("%s is already running", name)
	}
	if err := st.startVM(ctx, i); err != nil {
		return err
	}
	return st.save()
}

// Console connects in and out to a VM's serial console until in ends or
// ctx is done.
func Console(ctx context.Context, dir, name string, in io.Reader, out io.Writer) error {
	st, i, err := openVM(ctx, dir, name)
	if err != nil {
		return err
	}
	v := st.VMs[i]
	if !v.Proc.alive() {
		return fmt.Errorf("%s is stopped; start it with 'outpost lab start %s'", name, name)
	}
	conn, err := qemu.DialConsole(v.Dir)
	if err != nil {
		return err
	}
	defer conn.Close()
	done := make(chan error, 2)
	go func() { _, err := io.Copy(out, conn); done <- err }()
	go func() { _, err := io.Copy(conn, in); done <- err }()
	select {
	case <-ctx.Done():
		return nil
	case err := <-done:
		return err
	}
}
