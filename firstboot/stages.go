package firstboot

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/outpost-appliance/outpost/firstboot/config"
	"github.com/outpost-appliance/outpost/firstboot/enroll"
	"github.com/outpost-appliance/outpost/firstboot/netconf"
	"github.com/outpost-appliance/outpost/firstboot/timesync"
)

// StageName names a stage in the state file, the status and the crash
// points.
type StageName string

// First boot's stages, in order.
const (
	StageConfig    StageName = "config"
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

// Stage is one step of first boot.
type Stage interface {
	Name() StageName
	Schedule() Schedule
	Run(ctx context.Context, st *State) error
}

// Stages returns first boot's steps in order.
func Stages(env *Env) []Stage {
	return []Stage{
		configStage{env}, networkStage{env}, dnsStage{env}, timeStage{env},
		preflightStage{env}, enrollStage{env}, reportStage{env},
	}
}

// ErrNoKey means no provisioning key was given.
var ErrNoKey = fmt.Errorf("no provisioning key: write it to %s (or set the outpost.provision_key property) and first boot continues within seconds", config.KeyFile)

// ---- config ----

type configStage struct{ env *Env }

func (configStage) Name() StageName    { return StageConfig }
func (configStage) Schedule() Schedule { return UntilEnrolled }
func (s configStage) Run(ctx context.Context, st *State) error {
	c, err := s.env.loadConfig(ctx)
	if err != nil {
		return err
	}
	st.cfg = c
	st.Config = c // the key is not serialised (json:"-")
	for _, w := range c.Warnings {
		s.env.log().Warn("configuration repaired", "detail", w)
	}
	return nil
}

// ---- network ----

type networkStage struct{ env *Env }

func (networkStage) Name() StageName { return StageNetwork }

// Schedule: addresses do not survive a reboot, and systemd-networkd starts
// only after first boot, so a run resumed on the next boot must bring the
// network up again (unless it is still up, as on a re-run in the same boot).
func (networkStage) Schedule() Schedule { return UntilEnrolled }

func (s networkStage) Run(ctx context.Context, st *State) error {
	e, c := s.env, st.cfg
	n := e.Net
	if n == nil {
		n = HostNetwork{}
	}
	ifc, err := n.Primary(e.Interface)
	if err != nil {
		return err
	}
	if _, done := st.Done[StageNetwork]; done && st.Network != nil && st.Interface == ifc.Name && n.Has(ifc.Name, st.Network.Address) {
		e.log().Debug("network already configured", "interface", ifc.Name, "address", st.Network.Address)
		return nil
	}
	st.Interface, st.MAC = ifc.Name, ifc.HardwareAddr.String()
	var lease *netconf.Lease
	var static *netconf.Lease
	if c.Mode == config.Static {
		lease = &netconf.Lease{Address: c.Address, Router: c.Gateway, DNS: c.DNSServers, Search: c.DNSSearch, NTP: c.NTPServers}
		static = lease
		e.log().Info("applying static address", "interface", ifc.Name, "address", c.Address, "gateway", c.Gateway)
	} else {
		timeout := e.DHCPTimeout
		if timeout == 0 {
			timeout = 30 * time.Second
		}
		e.log().Info("requesting a DHCP lease", "interface", ifc.Name, "timeout", timeout)
		lease, err = n.DHCP(ctx, ifc.Name, timeout)
		if err != nil {
			return err
		}
		e.log().Info("DHCP lease", "address", lease.Address, "router", lease.Router, "dns", lease.DNS, "ntp", lease.NTP, "search", lease.Search, "lease", lease.LeaseTime)
	}
	mtu := c.MTU
	if mtu == 0 {
		mtu = lease.MTU
	}
	if err := n.Apply(ifc.Name, lease.Address, lease.Router, mtu); err != nil {
		return err
	}
	st.Network = lease
	if err := e.Root.WriteFile("/etc/systemd/network/10-outpost.network", netconf.NetworkdFile(ifc.HardwareAddr, static, c.MTU), 0o644); err != nil {
		return err
	}
	if c.Hostname != "" {
		if err := e.Root.WriteFile("/etc/hostname", []byte(c.Hostname+"\n"), 0o644); err != nil {
			return err
		}
		if e.SetHostname != nil {
			if err := e.SetHostname(c.Hostname); err != nil {
				return fmt.Errorf("set host name %q: %w", c.Hostname, err)
			}
		}
	}
	return nil
}

// ---- DNS ----

type dnsStage struct{ env *Env }

func (dnsStage) Name() StageName    { return StageDNS }
func (dnsStage) Schedule() Schedule { return UntilEnrolled } // follows a new lease

func dnsSettings(st *State) ([]netip.Addr, []string) {
	servers, search := st.cfg.DNSServers, st.cfg.DNSSearch
	if st.Network != nil {
		if len(servers) == 0 {
			servers = st.Network.DNS
		}
		if len(search) == 0 {
			search = st.Network.Search
		}
	}
	return servers, search
}

func (s dnsStage) Run(ctx context.Context, st *State) error {
	servers, search := dnsSettings(st)
	if len(servers) == 0 {
		return errors.New("no DNS servers: set outpost.dns.servers, or have the DHCP server send them (option 6)")
	}
	var b strings.Builder
	b.WriteString("# Written by outpost-firstboot.\n")
	for _, a := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", a)
	}
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	if err := s.env.Root.WriteFile("/etc/resolv.conf", []byte(b.String()), 0o644); err != nil {
		return err
	}
	// Resolution is checked in preflight, where it is shown in the table
	// and re-checked on every run (the key may arrive later).
	return nil
}

// ---- time ----

type timeStage struct{ env *Env }

func (timeStage) Name() StageName    { return StageTime }
func (timeStage) Schedule() Schedule { return UntilEnrolled }
func (s timeStage) Run(ctx context.Context, st *State) error {
	e := s.env
	servers := st.cfg.NTPServers
	if len(servers) == 0 && st.Network != nil {
		servers = st.Network.NTP
	}
	if len(servers) > 0 {
		if err := e.Root.WriteFile("/etc/chrony/chrony.conf", timesync.ChronyConf(servers), 0o644); err != nil {
			return err
		}
	}
	st.ClockCorrection = 0
	sy := timesync.Syncer{Servers: servers, Now: e.Now, Query: e.NTPQuery, Set: e.SetClock}
	stepped := false
	if e.SetClock == nil {
		// No permission to touch the clock: remember the correction and
		// use it for certificate checks.
		sy.Set = func(time.Time) error { return nil }
	}
	r, err := sy.Sync(ctx)
	st.Time = r
	if err != nil && r != nil {
		// A server answered but the clock could not be stepped: certificate
		// checks use the corrected time all the same.
		st.ClockCorrection = r.Offset
	}
	if err != nil {
		// Not fatal: enrollment may still work if the clock is right. Say
		// so in status; the TLS check will name the clock if it is wrong.
		st.TimeError = err.Error()
		e.log().Warn("time check failed", "err", err, "clock", e.now().UTC().Format(time.RFC3339))
		return nil
	}
	st.TimeError = ""
	if r.Stepped {
		stepped = e.SetClock != nil
		if !stepped {
			st.ClockCorrection = r.Offset
		}
	}
	e.log().Info("clock checked", "server", r.Server, "offset", r.Offset.Round(time.Millisecond), "stepped", stepped)
	return nil
}

// clock is the time certificate checks use.
func (e *Env) clock(st *State) func() time.Time {
	return func() time.Time { return e.now().Add(st.ClockCorrection) }
}

// ---- preflight ----

type preflightStage struct{ env *Env }

func (preflightStage) Name() StageName    { return StagePreflight }
func (preflightStage) Schedule() Schedule { return UntilEnrolled }
func (s preflightStage) Run(ctx context.Context, st *State) error {
	if err := s.env.waitKey(ctx, st); err != nil {
		return err
	}
	st.Preflight = s.env.preflight(ctx, st)
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

// waitKey polls the configuration until a key appears or KeyWait passes: a
// key written to the key file later is picked up within a second.
func (e *Env) waitKey(ctx context.Context, st *State) error {
	if st.cfg.HasKey {
		return nil
	}
	if e.KeyWait <= 0 {
		return ErrNoKey
	}
	e.log().Warn("waiting for the provisioning key", "file", config.KeyFile, "for", e.KeyWait)
	ctx, cancel := context.WithTimeout(ctx, e.KeyWait)
	defer cancel()
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ErrNoKey
		case <-t.C:
		}
		c, err := e.loadConfig(ctx)
		if err != nil {
			return err // a bad key is reported at once, with its problem
		}
		if c.HasKey {
			st.cfg, st.Config = c, c
			e.log().Info("provisioning key found", "source", c.KeySource, "key", c.Key.Redacted())
			return nil
		}
	}
}

// ---- enroll ----

type enrollStage struct{ env *Env }

func (enrollStage) Name() StageName    { return StageEnroll }
func (enrollStage) Schedule() Schedule { return Once }
func (s enrollStage) Run(ctx context.Context, st *State) error {
	e := s.env
	if st.Enrolled() {
		// A run stopped between storing the certificate and removing the
		// key finishes the job here.
		return removeKeyFile(e)
	}
	k := st.cfg.Key
	en := &st.Enroll
	var id *enroll.Identity
	keyPEM, kerr := e.Root.ReadFile(KeyFile)
	if en.CSR != "" && en.Nonce != "" && kerr == nil && en.KeyID == k.ID.String() {
		// Resume: the same request as before the interruption.
		id = &enroll.Identity{KeyPEM: keyPEM, CSRPEM: []byte(en.CSR), Fingerprint: en.Fingerprint, Nonce: en.Nonce}
	} else {
		mac, err := net.ParseMAC(st.MAC)
		if err != nil {
			return fmt.Errorf("primary NIC MAC %q: %w", st.MAC, err)
		}
		fp, err := enroll.Fingerprint(mac, e.readTrim("/sys/class/dmi/id/product_uuid"))
		if err != nil {
			return err
		}
		e.waitEntropy(ctx)
		cn := st.cfg.Hostname
		if cn == "" {
			cn = "outpost-connector"
		}
		id, err = enroll.NewIdentity(cn, fp, e.Rand)
		if err != nil {
			return err
		}
		// Private key first, then the state that refers to it: a crash in
		// between leaves a key nobody has seen, replaced on the next run.
		if err := e.Root.WriteFile(KeyFile, id.KeyPEM, 0o600); err != nil {
			return err
		}
		en.CSR, en.Nonce, en.Fingerprint, en.KeyID = string(id.CSRPEM), id.Nonce, id.Fingerprint, k.ID.String()
		if err := st.Save(e.Root, e.now()); err != nil {
			return err
		}
		e.crash("enroll:identity-saved")
	}
	en.ControlPlane = k.Host
	var proxy *url.URL
	if st.cfg.Proxy != "" {
		proxy, _ = url.Parse(st.cfg.Proxy)
	}
	cl := &enroll.Client{Key: k, Now: e.clock(st), Sleep: e.Sleep, Attempts: e.EnrollAttempts, Proxy: proxy, Log: e.log(),
		Transport: e.transport(st)}
	e.log().Info("enrolling", "control_plane", k.Host, "key", k.Redacted(), "nonce", id.Nonce, "fingerprint", id.Fingerprint)
	res, err := cl.Enroll(ctx, id)
	if err != nil {
		return err
	}
	e.crash("enroll:response")
	exp, err := res.NotAfter()
	if err != nil {
		return err
	}
	if err := e.Root.WriteFile(CertFile, []byte(res.Certificate), 0o644); err != nil {
		return err
	}
	en.Name, en.Group, en.CertExpiry, en.At = res.Name, res.Group, exp.UTC(), e.now().UTC()
	if err := st.Save(e.Root, e.now()); err != nil {
		return err
	}
	e.crash("enroll:cert-stored")
	return removeKeyFile(e)
}

// removeKeyFile deletes the provisioning key once enrolled: it has no
// further use on this disk.
func removeKeyFile(e *Env) error {
	if err := e.Root.Remove(config.KeyFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("enrolled, but could not remove %s: %w; remove it by hand", config.KeyFile, err)
	}
	return nil
}

// waitEntropy says on the console when the kernel's pool is not ready yet:
// without RDRAND or virtio-rng, getrandom can block for minutes.
func (e *Env) waitEntropy(ctx context.Context) {
	if e.Rand != nil {
		return
	}
	buf := make([]byte, 1)
	if _, err := unix.Getrandom(buf, unix.GRND_NONBLOCK); err == unix.EAGAIN {
		e.log().Warn("waiting for the kernel's random number generator to be ready (add virtio-rng, or -cpu max under QEMU)")
		rand.Read(buf)
	}
}

// ---- report ----

type reportStage struct{ env *Env }

func (reportStage) Name() StageName    { return StageReport }
func (reportStage) Schedule() Schedule { return Always }
func (s reportStage) Run(ctx context.Context, st *State) error {
	return nil // the runner writes the report after every stage
}
