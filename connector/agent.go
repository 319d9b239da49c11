package connector

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/firstboot"
	"github.com/outpost-appliance/outpost/firstboot/enroll"
	"github.com/outpost-appliance/outpost/firstboot/sysroot"
	"github.com/outpost-appliance/outpost/upgrade"
)

// Defaults of Agent's timing.
const (
	DefaultInterval = 10 * time.Second
	maxBackoff      = time.Minute
	// blockedWait is how long a blocked or revoked connector waits between
	// attempts: the admin has to act, so hammering the control plane helps
	// nobody.
	blockedWait = 5 * time.Minute
	// statusEvery is how often the status lines are logged while nothing
	// changes.
	statusEvery = time.Hour
)

// Agent heartbeats, renews and reports. The zero value of each seam means
// the real thing.
type Agent struct {
	Root    sysroot.Root
	Version string
	// Interval between heartbeats; DefaultInterval when zero, or what the
	// control plane asks for.
	Interval time.Duration
	Log      *slog.Logger
	Now      func() time.Time
	// Sleep waits d or until ctx ends.
	Sleep func(ctx context.Context, d time.Duration) error
	// Facts reads what the heartbeat reports about the machine.
	Facts Facts
	// Console receives a line for a person when the state changes (the
	// unit sends stdout to the console); nil discards.
	Console io.Writer
	// Dial overrides how connections are made (tests).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// EnrollWait is how often the agent looks for an enrollment that has
	// not happened yet; 2 s when zero.
	EnrollWait time.Duration
	// BannerChanged is called after the console banner was rewritten, so
	// the login prompts show it again (agetty --reload); nil does nothing.
	BannerChanged func()
	// Upgrades installs the releases the control plane orders and blesses
	// a trial boot; nil: this connector cannot upgrade itself and says so
	// when ordered.
	Upgrades *upgrade.System
	// Reboot restarts the machine into an installed release; nil only
	// logs that a reboot is needed.
	Reboot func() error

	up       upgradeState
	mu       sync.Mutex
	id       *Identity
	client   *http.Client
	status   Status
	lastLog  time.Time
	reported string // state and reason last told the console
}

// Facts are the machine's details a heartbeat carries.
type Facts interface {
	// Fingerprint is the hardware fingerprint now, for the interface first
	// boot configured.
	Fingerprint(iface string) (string, error)
	Addresses(iface string) []string
	Uptime() time.Duration
}

func (a *Agent) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func (a *Agent) log() *slog.Logger {
	if a.Log != nil {
		return a.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (a *Agent) sleep(ctx context.Context, d time.Duration) error {
	if a.Sleep != nil {
		return a.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// enrollment is what first boot recorded.
type enrollment struct {
	name, group, controlPlane, fingerprint, iface string
}

func (a *Agent) waitEnrolled(ctx context.Context) (enrollment, *Identity, error) {
	wait := a.EnrollWait
	if wait == 0 {
		wait = 2 * time.Second
	}
	said := false
	for {
		st, err := firstboot.LoadState(a.Root)
		if err == nil && st.Enrolled() {
			id, err := LoadIdentity(a.Root)
			if err == nil {
				return enrollment{st.Enroll.Name, st.Enroll.Group, st.Enroll.ControlPlane, st.Enroll.Fingerprint, st.Interface}, id, nil
			}
			if !errors.Is(err, ErrNotEnrolled) {
				return enrollment{}, nil, fmt.Errorf("the connector's identity is unusable: %w; revoke the connector and enroll the appliance again", err)
			}
		}
		if !said {
			a.setState(StateWaiting, "first boot has not enrolled this appliance yet", nil)
			said = true
		}
		if err := a.sleep(ctx, wait); err != nil {
			return enrollment{}, nil, err
		}
	}
}

// Run heartbeats until ctx ends. It returns only for ctx or an identity
// that cannot be used.
func (a *Agent) Run(ctx context.Context) error {
	en, id, err := a.waitEnrolled(ctx)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.id = id
	a.status.Name, a.status.Group, a.status.ControlPlane = en.name, en.group, en.controlPlane
	a.status.Version = a.Version
	a.status.CertExpiry = id.Leaf.NotAfter.UTC()
	a.mu.Unlock()
	a.client = a.newClient(en.controlPlane)
	a.setState(StateConnecting, "", nil)
	a.assessBoot()

	backoff := time.Second
	for {
		wait, err := a.beat(ctx, en)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err == nil:
			backoff = time.Second
			if err := a.maybeRenew(ctx, en); err != nil {
				a.log().Warn("certificate renewal failed; the current certificate stays in use", "error", err)
			}
		case wait == 0:
			wait = jitter(backoff)
			backoff = min(backoff*2, maxBackoff)
		}
		if err := a.sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// jitter spreads d by ±20% so that connectors cut off together do not come
// back together.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

func (a *Agent) newClient(host string) *http.Client {
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{
			ServerName: name,
			MinVersion: tls.VersionTLS12,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				a.mu.Lock()
				defer a.mu.Unlock()
				return &a.id.Cert, nil
			},
			RootCAs: a.id.Roots,
		},
		DialContext:         a.Dial,
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	if a.Dial == nil {
		tr.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// post sends in to path and decodes out; a refusal comes back as
// *cpapi.Error.
func (a *Agent) post(ctx context.Context, host, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+host+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		if e, ok := cpapi.ParseError(b); ok {
			return e
		}
		return fmt.Errorf("control plane answered %s", resp.Status)
	}
	return json.Unmarshal(b, out)
}

// beat sends one heartbeat. wait is how long to wait before the next one
// (0: the caller backs off).
func (a *Agent) beat(ctx context.Context, en enrollment) (wait time.Duration, err error) {
	fp := en.fingerprint
	if a.Facts != nil {
		if cur, ferr := a.Facts.Fingerprint(en.iface); ferr == nil {
			fp = cur
		} else {
			a.log().Warn("cannot read the hardware fingerprint; sending the enrolled one", "error", ferr)
		}
	}
	a.mu.Lock()
	req := cpapi.HeartbeatRequest{Fingerprint: fp, Version: a.Version, Skew: a.status.Skew}
	a.mu.Unlock()
	req.Upgrade = a.upgradeReport()
	if a.Facts != nil {
		req.Uptime = int64(a.Facts.Uptime() / time.Second)
		req.Addresses = a.Facts.Addresses(en.iface)
	}
	t0 := a.now()
	var resp cpapi.HeartbeatResponse
	err = a.post(ctx, en.controlPlane, cpapi.PathHeartbeat, req, &resp)
	t1 := a.now()
	if err != nil {
		var ce *cpapi.Error
		switch {
		case errors.As(err, &ce) && ce.Code == cpapi.CodeBlocked:
			a.setState(StateBlocked, ce.Message, nil)
			return blockedWait, err
		case errors.As(err, &ce) && ce.Code == cpapi.CodeRevoked:
			a.setState(StateRevoked, ce.Message, nil)
			return blockedWait, err
		}
		a.setState(StateDisconnected, describe(err, en.controlPlane), nil)
		return 0, err
	}
	interval := a.Interval
	if interval == 0 {
		interval = DefaultInterval
	}
	if resp.Interval > 0 && a.Interval == 0 {
		interval = time.Duration(resp.Interval) * time.Second
	}
	a.setState(StateConnected, "", func(s *Status) {
		s.LastHeartbeat = t1.UTC()
		s.Addresses = req.Addresses
		if !resp.ServerTime.IsZero() {
			mid := t0.Add(t1.Sub(t0) / 2)
			s.Skew = mid.Sub(resp.ServerTime).Seconds()
			s.SkewKnown = true
		}
	})
	a.acknowledged(req.Upgrade)
	a.afterBeat(ctx, en, resp)
	return interval, nil
}

// describe says in words why the control plane could not be reached.
func describe(err error, host string) string {
	var dnsErr *net.DNSError
	var opErr *net.OpError
	switch {
	case errors.As(err, &dnsErr):
		return fmt.Sprintf("cannot resolve %s: %v; check the DNS servers", host, dnsErr.Err)
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return fmt.Sprintf("cannot connect to %s: %v; check the network path to the control plane (outbound 443)", host, opErr.Err)
	case strings.Contains(err.Error(), "certificate"):
		return fmt.Sprintf("TLS to %s failed: %v; if SSL inspection is in the path, bypass it for connector traffic", host, err)
	}
	return fmt.Sprintf("heartbeat to %s failed: %v", host, err)
}

// renewAfter is the share of the certificate's lifetime after which it is
// renewed.
const renewAfter = 2.0 / 3

func (a *Agent) maybeRenew(ctx context.Context, en enrollment) error {
	a.mu.Lock()
	leaf := a.id.Leaf
	a.mu.Unlock()
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	if a.now().Before(leaf.NotBefore.Add(time.Duration(float64(life) * renewAfter))) {
		return nil
	}
	a.log().Info("renewing the certificate", "expires", leaf.NotAfter.UTC())
	fp := en.fingerprint
	if a.Facts != nil {
		if cur, err := a.Facts.Fingerprint(en.iface); err == nil {
			fp = cur
		}
	}
	nid, err := enroll.NewIdentity(leaf.Subject.CommonName, fp, nil)
	if err != nil {
		return err
	}
	var resp cpapi.RenewResponse
	if err := a.post(ctx, en.controlPlane, cpapi.PathRenew, cpapi.RenewRequest{CSR: string(nid.CSRPEM), Fingerprint: fp}, &resp); err != nil {
		return err
	}
	if err := StoreIdentity(a.Root, []byte(resp.Certificate), nid.KeyPEM); err != nil {
		return err
	}
	id, err := LoadIdentity(a.Root)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.id = id
	a.mu.Unlock()
	a.client.CloseIdleConnections()
	a.setState(StateConnected, "", func(s *Status) { s.CertExpiry = id.Leaf.NotAfter.UTC() })
	a.log().Info("certificate renewed", "expires", id.Leaf.NotAfter.UTC())
	return nil
}
