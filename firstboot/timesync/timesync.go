// Package timesync checks the appliance's clock against NTP servers before
// any TLS, steps it when it is off by more than a threshold, and renders the
// chrony configuration that keeps it in sync afterwards.
//
// A fresh VM's clock can be years off (a wrong host clock, a template made
// long ago); certificate checks fail then, so first boot corrects it first.
package timesync

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/beevik/ntp"
	"golang.org/x/sys/unix"
)

// ErrNoServer means no NTP server answered.
var ErrNoServer = errors.New("no NTP server answered")

// Result is the outcome of a sync.
type Result struct {
	Server  string        `json:"server"`
	Offset  time.Duration `json:"offset"` // server time minus local time
	RTT     time.Duration `json:"rtt"`
	Stratum uint8         `json:"stratum"`
	Stepped bool          `json:"stepped"`
}

// Syncer queries servers in order and steps the clock.
type Syncer struct {
	Servers []string
	// Threshold is the offset above which the clock is stepped (default 1s).
	Threshold time.Duration
	Timeout   time.Duration // per server, default 3s
	// Now and Set are the clock seams; defaults are time.Now and SetSystemClock.
	Now func() time.Time
	Set func(time.Time) error
	// Query defaults to ntp.QueryWithOptions.
	Query func(host string, opt ntp.QueryOptions) (*ntp.Response, error)
}

// Sync queries the servers until one answers validly, and steps the clock
// when it is off by more than the threshold.
func (s Syncer) Sync(ctx context.Context) (*Result, error) {
	if len(s.Servers) == 0 {
		return nil, fmt.Errorf("%w: no NTP servers configured (set outpost.ntp.servers, or have DHCP send option 42)", ErrNoServer)
	}
	now, set, query := s.Now, s.Set, s.Query
	if now == nil {
		now = time.Now
	}
	if set == nil {
		set = SetSystemClock
	}
	if query == nil {
		query = ntp.QueryWithOptions
	}
	thr := s.Threshold
	if thr == 0 {
		thr = time.Second
	}
	timeout := s.Timeout
	if timeout == 0 {
		timeout = 3 * time.Second
	}
	var errs []string
	for _, srv := range s.Servers {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		resp, err := query(srv, ntp.QueryOptions{Timeout: timeout})
		if err == nil {
			err = resp.Validate()
		}
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", srv, err))
			continue
		}
		// The response's offset is against the system clock; with an
		// injected clock, measure against it instead.
		offset := resp.Time.Add(resp.RTT / 2).Sub(now())
		if s.Now == nil {
			offset = resp.ClockOffset
		}
		r := &Result{Server: srv, Offset: offset, RTT: resp.RTT, Stratum: resp.Stratum}
		if offset > thr || offset < -thr {
			if err := set(now().Add(offset)); err != nil {
				return r, fmt.Errorf("the clock is off by %s (NTP server %s) and could not be set: %w", offset.Round(time.Millisecond), srv, err)
			}
			r.Stepped = true
		}
		return r, nil
	}
	return nil, fmt.Errorf("%w (%s); the clock reads %s: certificate checks may fail if it is wrong; check that UDP port 123 to these servers is allowed, or set outpost.ntp.servers",
		ErrNoServer, strings.Join(errs, "; "), now().UTC().Format(time.RFC3339))
}

// SetSystemClock steps the system's real-time clock (needs CAP_SYS_TIME).
func SetSystemClock(t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	return unix.ClockSettime(unix.CLOCK_REALTIME, &ts)
}

// ChronyConf renders chrony.conf for ongoing synchronisation.
func ChronyConf(servers []string) []byte {
	var b strings.Builder
	b.WriteString("# Written by outpost-firstboot.\n")
	for _, s := range servers {
		fmt.Fprintf(&b, "server %s iburst\n", s)
	}
	b.WriteString("driftfile /var/lib/chrony/chrony.drift\nmakestep 1 3\nrtcsync\n")
	return []byte(b.String())
}

// FormatOffset renders a clock offset as first boot's status and the
// connector's status lines show it: "+0.002s" within a minute (rounded to
// the millisecond), "-3m12s" beyond.
func FormatOffset(d time.Duration) string {
	if d > -time.Minute && d < time.Minute {
		d = d.Round(time.Millisecond)
		if d == 0 {
			return "+0.000s"
		}
		return fmt.Sprintf("%+.3fs", d.Seconds())
	}
	sign := "+"
	if d < 0 {
		sign, d = "-", -d
	}
	return sign + d.Round(time.Second).String()
}
