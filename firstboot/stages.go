package firstboot

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/beevik/ntp"
	"golang.org/x/sys/unix"

	"github.com/outpost-appliance/outpost/firstboot/config"
	"github.com/outpost-appliance/outpost/firstboot/enroll"
	"github.com/outpost-appliance/outpost/firstboot/netconf"
	"github.com/outpost-appliance/outpost/firstboot/sysroot"
	"github.com/outpost-appliance/outpost/firstboot/timesync"
)

// StageName names a stage in the state file, the status and the crash
// points.
type StageName string

// First boot's stages, in order.
const (
	StageConfig    StageName = "config"
	StageAccess    StageName = "access"
	StageNetwork   StageName = "network"
	StageDNS       StageName = "dns"
	StageTime      StageName = "time"
	StagePreflight StageName = "preflight"
	StageEnroll    StageName = "enroll"
	StageReport    StageName = "report"
)

// Schedule says when the runner runs a stage.
type Schedule int

const (
	// UntilEnrolled stages run on every invocation until the appliance is
	// enrolled, then never again: what they produce does not outlive the
	// process or the boot (the key lives only in memory, addresses go with
	// a reboot, the clock drifts), and after enrollment a later config
	// problem must not turn a working connector into a failed one.
	UntilEnrolled Schedule = iota
	// Once stages run until they complete, enrolled or not: enrollment
	// finishes its clean-up after a run killed between storing the
	// certificate and recording the stage done.
	Once
	// Always stages run on every invocation (the report).
	Always
)

// Stage is one step of first boot. Run reads its inputs from the typed
// results earlier stages recorded in st (the configuration, Networking,
// TimeCheck) and records its own; the runner persists st around it.
type Stage interface {
	Name() StageName
	Schedule() Schedule
	Run(ctx context.Context, st *State) error
}

// Stages returns first boot's steps in order, each given only the seams of
// env it uses. A stage reads its inputs from the typed results of the
// stages before it (State's config, Networking, TimeCheck) and records its
// own.
func Stages(env *Env) []Stage {
	log := env.log()
	return []Stage{
		configStage{load: env.loadConfig, log: log},
		accessStage{root: env.Root, systemctl: env.Systemctl, log: log},
		networkStage{net: env.network(), iface: env.Interface, dhcpTimeout: env.DHCPTimeout, root: env.Root, setHostname: env.SetHostname, log: log},
		dnsStage{root: env.Root},
		timeStage{root: env.Root, now: env.now, setClock: env.SetClock, query: env.NTPQuery, log: log},
		preflightStage{load: env.loadConfig, keyWait: env.KeyWait, facts: env.facts, route: env.route, now: env.now, log: log},
		enrollStage{root: env.Root, route: env.route, now: env.now, rand: env.Rand, sleep: env.Sleep, attempts: env.EnrollAttempts, crash: env.crash, log: log},
		reportStage{},
	}
}

// ErrNoKey means no provisioning key was given.
var ErrNoKey = fmt.Errorf("no provisioning key: write it to %s (or set the outpost.provision_key property) and first boot continues within seconds", config.KeyFile)

// loadFunc loads and validates the configuration from all its sources.
// Env.loadConfig is the one implementation: the config stage calls it at
// the start of a run, preflight again while it waits for a key.
type loadFunc func(ctx context.Context) (*config.Config, error)

// ---- config ----

// configStage loads the configuration: its result is State's config.
type configStage struct {
	load loadFunc
	log  *slog.Logger
}

func (configStage) Name() StageName    { return StageConfig }
func (configStage) Schedule() Schedule { return UntilEnrolled }
func (s configStage) Run(ctx context.Context, st *State) error {
	c, err := s.load(ctx)
	if err != nil {
		return err
	}
	st.setConfig(c) // the key is not serialised (json:"-")
	for _, w := range c.Warnings {
		s.log.Warn("configuration warning", "detail", w)
	}
	return nil
}

// ---- network ----

// networkStage brings up the primary NIC from the configuration; its result
// is Networking, with the DNS and NTP settings resolved.
type networkStage struct {
	net         Network
	iface       string
	dhcpTimeout time.Duration
	root        sysroot.Root
	setHostname func(string) error
	log         *slog.Logger
}

func (networkStage) Name() StageName { return StageNetwork }

// Schedule: addresses do not survive a reboot, and systemd-networkd starts
// only after first boot, so a run resumed on the next boot must bring the
// network up again (unless it is still up, as on a re-run in the same boot).
func (networkStage) Schedule() Schedule { return UntilEnrolled }

func (s networkStage) Run(ctx context.Context, st *State) error {
	_, done := st.Done[StageNetwork]
	n, err := s.bringUp(ctx, st.cfg, st.Networking, done)
	st.Networking = n
	return err
}

// bringUp configures the network for c; prev is the result of an earlier
// run, kept when its address is still up. It returns what is in effect,
// as far as it got on an error.
func (s networkStage) bringUp(ctx context.Context, c *config.Config, prev Networking, done bool) (Networking, error) {
	ifc, err := s.net.Primary(s.iface)
	if err != nil {
		return prev, err
	}
	if done && prev.Network != nil && prev.Interface == ifc.Name && s.net.Has(ifc.Name, prev.Network.Address) {
		s.log.Debug("network already configured", "interface", ifc.Name, "address", prev.Network.Address)
		return prev.resolve(c), nil
	}
	n := Networking{Interface: ifc.Name, MAC: ifc.HardwareAddr.String(), Network: prev.Network}
	var lease *netconf.Lease
	var static *netconf.Lease
	if c.Mode == config.Static {
		lease = &netconf.Lease{Address: c.Address, Router: c.Gateway, DNS: c.DNSServers, Search: c.DNSSearch, NTP: c.NTPServers}
		static = lease
		s.log.Info("applying static address", "interface", ifc.Name, "address", c.Address, "gateway", c.Gateway)
	} else {
		timeout := s.dhcpTimeout
		if timeout == 0 {
			timeout = 30 * time.Second
		}
		s.log.Info("requesting a DHCP lease", "interface", ifc.Name, "timeout", timeout)
		lease, err = s.net.DHCP(ctx, ifc.Name, timeout)
		if err != nil {
			return n, err
		}
		s.log.Info("DHCP lease", "address", lease.Address, "router", lease.Router, "dns", lease.DNS, "ntp", lease.NTP, "search", lease.Search, "lease", lease.LeaseTime)
	}
	mtu := c.MTU
	if mtu == 0 {
		mtu = lease.MTU
	}
	if err := s.net.Apply(ifc.Name, lease.Address, lease.Router, mtu); err != nil {
		return n, err
	}
	n.Network = lease
	n = n.resolve(c)
	if err := s.root.WriteFile("/etc/systemd/network/20-outpost-fallback.network", netconf.NetworkdFallback(ifc.Name, static, c.MTU), 0o644); err != nil {
		return n, err
	}
	if err := s.root.WriteFile("/etc/systemd/network/10-outpost.network", netconf.NetworkdFile(ifc.HardwareAddr, static, c.MTU), 0o644); err != nil {
		return n, err
	}
	if c.Hostname != "" {
		if err := s.root.WriteFile("/etc/hostname", []byte(c.Hostname+"\n"), 0o644); err != nil {
			return n, err
		}
		if s.setHostname != nil {
			if err := s.setHostname(c.Hostname); err != nil {
				return n, fmt.Errorf("set host name %q: %w", c.Hostname, err)
			}
		}
	}
	return n, nil
}

// ---- DNS ----

// dnsStage writes resolv.conf from Networking's DNS settings.
type dnsStage struct{ root sysroot.Root }

func (dnsStage) Name() StageName    { return StageDNS }
func (dnsStage) Schedule() Schedule { return UntilEnrolled } // follows a new lease
func (s dnsStage) Run(ctx context.Context, st *State) error {
	return writeResolvConf(s.root, st.Networking)
}

func writeResolvConf(root sysroot.Root, n Networking) error {
	if len(n.DNS) == 0 {
		return errors.New("no DNS servers: set outpost.dns.servers, or have the DHCP server send them (option 6)")
	}
	var b strings.Builder
	b.WriteString("# Written by outpost-firstboot.\n")
	for _, a := range n.DNS {
		fmt.Fprintf(&b, "nameserver %s\n", a)
	}
	if len(n.Search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(n.Search, " "))
	}
	// Resolution is checked in preflight, where it is shown in the table
	// and re-checked on every run (the key may arrive later).
	return root.WriteFile("/etc/resolv.conf", []byte(b.String()), 0o644)
}

// ---- time ----

// timeStage checks the clock against Networking's NTP servers; its result
// is TimeCheck.
type timeStage struct {
	root     sysroot.Root
	now      func() time.Time
	setClock func(time.Time) error // nil: correct certificate checks instead
	query    func(host string, opt ntp.QueryOptions) (*ntp.Response, error)
	log      *slog.Logger
}

func (timeStage) Name() StageName    { return StageTime }
func (timeStage) Schedule() Schedule { return UntilEnrolled }
func (s timeStage) Run(ctx context.Context, st *State) error {
	t, err := s.check(ctx, st.Networking.NTP)
	if err != nil {
		return err
	}
	st.TimeCheck = t
	return nil
}

// check writes chrony's configuration and steps the clock, or records the
// correction when it may not. An NTP failure is not an error: enrollment
// may still work if the clock is right, and the status says so.
func (s timeStage) check(ctx context.Context, servers []string) (TimeCheck, error) {
	if len(servers) > 0 {
		if err := s.root.WriteFile("/etc/chrony/chrony.conf", timesync.ChronyConf(servers), 0o644); err != nil {
			return TimeCheck{}, err
		}
	}
	var t TimeCheck
	sy := timesync.Syncer{Servers: servers, Now: s.now, Query: s.query, Set: s.setClock}
	stepped := false
	if s.setClock == nil {
		// No permission to touch the clock: remember the correction and
		// use it for certificate checks.
		sy.Set = func(time.Time) error { return nil }
	}
	r, err := sy.Sync(ctx)
	t.Time = r
	if err != nil && r != nil {
		// A server answered but the clock could not be stepped: certificate
		// checks use the corrected time all the same.
		t.ClockCorrection = r.Offset
	}
	if err != nil {
		// The TLS check will name the clock if it is wrong.
		t.TimeError = err.Error()
		s.log.Warn("time check failed", "err", err, "clock", s.now().UTC().Format(time.RFC3339))
		return t, nil
	}
	if r.Stepped {
		stepped = s.setClock != nil
		if !stepped {
			t.ClockCorrection = r.Offset
		}
	}
	s.log.Info("clock checked", "server", r.Server, "offset", r.Offset.Round(time.Millisecond), "stepped", stepped)
	return t, nil
}

// ---- preflight ----

// preflightStage waits for the key when there is none yet (reloading the
// configuration), then checks the hardware and the route to the control
// plane; its result is the Preflight table.
type preflightStage struct {
	load    loadFunc
	keyWait time.Duration
	facts   func() (Facts, error)
	route   func(dns []netip.Addr) enroll.Route
	now     func() time.Time
	log     *slog.Logger
}

func (preflightStage) Name() StageName    { return StagePreflight }
func (preflightStage) Schedule() Schedule { return UntilEnrolled }
func (s preflightStage) Run(ctx context.Context, st *State) error {
	c, err := s.waitKey(ctx, st.cfg)
	if err != nil {
		return err
	}
	if c != st.cfg {
		st.setConfig(c)
	}
	st.Preflight = s.checks(ctx, c, st.Networking, st.TimeCheck.Clock(s.now))
	var failed []string
	for _, c := range st.Preflight {
		if c.Status == Fail {
			failed = append(failed, c.Name+": "+c.Detail)
		}
	}
	if len(failed) > 0 {
		return &PreflightError{Failed: failed}
	}
	return nil
}

// PreflightError lists the failed checks.
type PreflightError struct{ Failed []string }

func (e *PreflightError) Error() string {
	if len(e.Failed) == 1 {
		return "preflight failed: " + e.Failed[0]
	}
	return "preflight failed:\n  " + strings.Join(e.Failed, "\n  ")
}

// waitKey returns c when it has a key, else polls the configuration until
// a key appears or keyWait passes: a key written to the key file later is
// picked up within a second.
func (s preflightStage) waitKey(ctx context.Context, c *config.Config) (*config.Config, error) {
	if c.HasKey {
		return c, nil
	}
	if s.keyWait <= 0 {
		return nil, ErrNoKey
	}
	s.log.Warn("waiting for the provisioning key", "file", config.KeyFile, "for", s.keyWait)
	ctx, cancel := context.WithTimeout(ctx, s.keyWait)
	defer cancel()
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ErrNoKey
		case <-t.C:
		}
		c, err := s.load(ctx)
		if err != nil {
			return nil, err // a bad key is reported at once, with its problem
		}
		if c.HasKey {
			s.log.Info("provisioning key found", "source", c.KeySource, "key", c.Key.Redacted())
			return c, nil
		}
	}
}

// ---- enroll ----

// enrollStage enrolls with the control plane named in the key, over the
// route preflight checked; its result is Enrollment.
type enrollStage struct {
	root     sysroot.Root
	route    func(dns []netip.Addr) enroll.Route
	now      func() time.Time
	rand     io.Reader // nil: crypto/rand
	sleep    func(ctx context.Context, d time.Duration) error
	attempts int
	crash    func(point string)
	log      *slog.Logger
}

func (enrollStage) Name() StageName    { return StageEnroll }
func (enrollStage) Schedule() Schedule { return Once }
func (s enrollStage) Run(ctx context.Context, st *State) error {
	if st.Enrolled() {
		// A run stopped between storing the certificate and removing the
		// key finishes the job here.
		return removeKeyFile(s.root)
	}
	save := func() error { return st.Save(s.root, s.now()) }
	return s.enroll(ctx, st.cfg, st.Networking, st.TimeCheck.Clock(s.now), &st.Enroll, save)
}

// enroll fills en, calling save whenever en must be persisted before the
// next step: the CSR and nonce before the request, the result before the
// key file goes.
func (s enrollStage) enroll(ctx context.Context, c *config.Config, n Networking, clock func() time.Time, en *Enrollment, save func() error) error {
	k := c.Key
	var id *enroll.Identity
	keyPEM, kerr := s.root.ReadFile(KeyFile)
	if en.CSR != "" && en.Nonce != "" && kerr == nil && en.KeyID == k.ID.String() {
		// Resume: the same request as before the interruption.
		id = &enroll.Identity{KeyPEM: keyPEM, CSRPEM: []byte(en.CSR), Fingerprint: en.Fingerprint, Nonce: en.Nonce}
	} else {
		mac, err := net.ParseMAC(n.MAC)
		if err != nil {
			return fmt.Errorf("primary NIC MAC %q: %w", n.MAC, err)
		}
		fp, err := enroll.Fingerprint(mac, readTrim(s.root, "/sys/class/dmi/id/product_uuid"))
		if err != nil {
			return err
		}
		s.waitEntropy(ctx)
		cn := c.Hostname
		if cn == "" {
			cn = "outpost-connector"
		}
		id, err = enroll.NewIdentity(cn, fp, s.rand)
		if err != nil {
			return err
		}
		// Private key first, then the state that refers to it: a crash in
		// between leaves a key nobody has seen, replaced on the next run.
		if err := s.root.WriteFile(KeyFile, id.KeyPEM, 0o600); err != nil {
			return err
		}
		en.CSR, en.Nonce, en.Fingerprint, en.KeyID = string(id.CSRPEM), id.Nonce, id.Fingerprint, k.ID.String()
		if err := save(); err != nil {
			return err
		}
		s.crash("enroll:identity-saved")
	}
	en.ControlPlane = k.Host
	var proxy *url.URL
	if c.Proxy != "" {
		proxy, _ = url.Parse(c.Proxy)
	}
	cl := &enroll.Client{Key: k, Now: clock, Sleep: s.sleep, Attempts: s.attempts, Proxy: proxy, Log: s.log,
		Transport: s.route(n.DNS).Transport()}
	s.log.Info("enrolling", "control_plane", k.Host, "key", k.Redacted(), "nonce", id.Nonce, "fingerprint", id.Fingerprint)
	res, err := cl.Enroll(ctx, id)
	if err != nil {
		return err
	}
	s.crash("enroll:response")
	exp, err := res.NotAfter()
	if err != nil {
		return err
	}
	if err := s.root.WriteFile(CertFile, []byte(res.Certificate), 0o644); err != nil {
		return err
	}
	en.Name, en.Group, en.CertExpiry, en.At = res.Name, res.Group, exp.UTC(), s.now().UTC()
	if err := save(); err != nil {
		return err
	}
	s.crash("enroll:cert-stored")
	return removeKeyFile(s.root)
}

// removeKeyFile deletes the provisioning key once enrolled: it has no
// further use on this disk.
func removeKeyFile(root sysroot.Root) error {
	if err := root.Remove(config.KeyFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("enrolled, but could not remove %s: %w; remove it by hand", config.KeyFile, err)
	}
	return nil
}

// waitEntropy says on the console when the kernel's pool is not ready yet:
// without RDRAND or virtio-rng, getrandom can block for minutes.
func (s enrollStage) waitEntropy(ctx context.Context) {
	if s.rand != nil {
		return
	}
	buf := make([]byte, 1)
	if _, err := unix.Getrandom(buf, unix.GRND_NONBLOCK); err == unix.EAGAIN {
		s.log.Warn("waiting for the kernel's random number generator to be ready (add virtio-rng, or -cpu max under QEMU)")
		rand.Read(buf)
	}
}

// ---- report ----

// reportStage marks the end of the run; the runner writes the report after
// every stage.
type reportStage struct{}

func (reportStage) Name() StageName    { return StageReport }
func (reportStage) Schedule() Schedule { return Always }
func (reportStage) Run(ctx context.Context, st *State) error {
	return nil
}
