package connector

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/outpost-appliance/outpost/firstboot/sysroot"
	"github.com/outpost-appliance/outpost/firstboot/timesync"
)

// Connection states, as `outpost-connector status` and the banner show them.
const (
	StateWaiting      = "waiting for enrollment"
	StateConnecting   = "connecting"
	StateConnected    = "connected"
	StateDisconnected = "disconnected"
	StateBlocked      = "blocked"
	StateRevoked      = "revoked"
)

// Files the agent writes.
const (
	StatusFile = "/run/outpost/connector.json"
	IssueFile  = "/etc/issue.d/outpost.issue"
)

// Status is what the agent knows, written to StatusFile on every change.
type Status struct {
	Name          string    `json:"name,omitempty"`
	Group         string    `json:"group,omitempty"`
	ControlPlane  string    `json:"control_plane,omitempty"`
	State         string    `json:"state"`
	Reason        string    `json:"reason,omitempty"`
	LastHeartbeat time.Time `json:"last_heartbeat,omitzero"`
	CertExpiry    time.Time `json:"cert_expiry,omitzero"`
	// Skew is this clock minus the control plane's, in seconds.
	Skew      float64   `json:"skew"`
	SkewKnown bool      `json:"skew_known"`
	Version   string    `json:"version,omitempty"`
	Addresses []string  `json:"addresses,omitempty"`
	Updated   time.Time `json:"updated"`
}

// setState records a state change (and edit's details), writes the status
// file and the banner, and tells the console and the journal when the state
// or its reason changed, and the status lines once an hour otherwise.
func (a *Agent) setState(state, reason string, edit func(*Status)) {
	a.mu.Lock()
	a.status.State, a.status.Reason = state, reason
	if edit != nil {
		edit(&a.status)
	}
	a.status.Updated = a.now().UTC()
	st := a.status
	changed := state+"\x00"+reason != a.reported
	periodic := a.now().Sub(a.lastLog) >= statusEvery
	if changed || periodic {
		a.reported = state + "\x00" + reason
		a.lastLog = a.now()
	}
	a.mu.Unlock()

	if b, err := json.MarshalIndent(st, "", "  "); err == nil {
		if err := a.Root.ReplaceFile(StatusFile, append(b, '\n'), 0o644); err != nil {
			a.log().Warn("cannot write the status file", "file", StatusFile, "error", err)
		}
	}
	if !changed && !periodic {
		return
	}
	if err := a.Root.ReplaceFile(IssueFile, []byte(st.Banner(a.now())), 0o644); err != nil {
		a.log().Warn("cannot write the console banner", "file", IssueFile, "error", err)
	} else if changed && a.BannerChanged != nil {
		a.BannerChanged()
	}
	for _, line := range st.Lines(a.now()) {
		a.log().Info(line)
	}
	if changed && a.Console != nil {
		fmt.Fprintf(a.Console, "outpost-connector: %s\n", st.Headline())
	}
}

// Headline is one line for the console: the state and why.
func (s Status) Headline() string {
	h := "Control connection state: " + s.State
	if s.Name != "" {
		h = s.Name + ": " + h
	}
	if s.Reason != "" {
		h += " — " + s.Reason
	}
	return h
}

// Lines are the status lines, in the words connector admins know.
func (s Status) Lines(now time.Time) []string {
	var l []string
	if s.Name != "" {
		g := ""
		if s.Group != "" {
			g = " (group " + s.Group + ")"
		}
		l = append(l, "Connector: "+s.Name+g)
	}
	if s.ControlPlane != "" {
		l = append(l, "Control plane: "+s.ControlPlane)
	}
	l = append(l, "Control connection state: "+s.State)
	if s.Reason != "" {
		l = append(l, "Reason: "+s.Reason)
	}
	if !s.LastHeartbeat.IsZero() {
		l = append(l, fmt.Sprintf("Last heartbeat: %s (%s ago)", s.LastHeartbeat.Format(time.RFC3339), Human(now.Sub(s.LastHeartbeat))))
	}
	if !s.CertExpiry.IsZero() {
		if d := s.CertExpiry.Sub(now); d > 0 {
			l = append(l, "Certificate will expire in "+Human(d))
		} else {
			l = append(l, "Certificate expired "+Human(-d)+" ago")
		}
	}
	if s.SkewKnown {
		l = append(l, "Time skew: "+timesync.FormatOffset(time.Duration(s.Skew*float64(time.Second))))
	}
	if len(s.Addresses) > 0 {
		l = append(l, "Addresses: "+strings.Join(s.Addresses, ", "))
	}
	if s.Version != "" {
		l = append(l, "Version: "+s.Version)
	}
	return l
}

// WriteText prints the status lines.
func (s Status) WriteText(w io.Writer, now time.Time) error {
	_, err := io.WriteString(w, strings.Join(s.Lines(now), "\n")+"\n")
	return err
}

// Banner is the console banner (an /etc/issue.d file: agetty expands
// backslash escapes, so they are doubled).
func (s Status) Banner(now time.Time) string {
	var b strings.Builder
	b.WriteString("\n  outpost connector\n")
	for _, line := range s.Lines(now) {
		b.WriteString("  " + strings.ReplaceAll(line, `\`, `\\`) + "\n")
	}
	b.WriteString("\n")
	return b.String()
}

// Human renders a duration the way the status lines do: "364 days,
// 23 hours", "5 minutes", "12 seconds".
func Human(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	unit := func(n int64, name string) string {
		if n == 1 {
			return "1 " + name
		}
		return fmt.Sprintf("%d %ss", n, name)
	}
	days, hours := int64(d/(24*time.Hour)), int64(d%(24*time.Hour)/time.Hour)
	mins, secs := int64(d%time.Hour/time.Minute), int64(d%time.Minute/time.Second)
	switch {
	case days > 0:
		return unit(days, "day") + ", " + unit(hours, "hour")
	case hours > 0:
		return unit(hours, "hour") + ", " + unit(mins, "minute")
	case mins > 0:
		return unit(mins, "minute")
	}
	return unit(secs, "second")
}

// ReadStatus reads the status file the running agent writes.
func ReadStatus(root sysroot.Root) (Status, error) {
	var s Status
	b, err := root.ReadFile(StatusFile)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s: %w", StatusFile, err)
	}
	return s, nil
}
