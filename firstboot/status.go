package firstboot

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/firstboot/sysroot"
	"github.com/outpost-appliance/outpost/firstboot/timesync"
)

// Connector states shown to people and automation.
const (
	// StateNotStarted: first boot has never run here (no state file).
	StateNotStarted  = "not_started"
	StateConfiguring = "configuring"
	StateWaitingKey  = "waiting_for_key"
	StateFailed      = appliance.GuestFailed
	StateEnrolled    = appliance.GuestEnrolled
)

// Status is the summary `outpost-firstboot status` prints and
// /run/outpost/status.json holds.
type Status struct {
	State        string     `json:"state"`
	Stage        string     `json:"stage,omitempty"`
	Name         string     `json:"name,omitempty"`
	Group        string     `json:"group,omitempty"`
	ControlPlane string     `json:"control_plane,omitempty"`
	CertExpiry   *time.Time `json:"cert_expiry,omitempty"`
	Interface    string     `json:"interface,omitempty"`
	MAC          string     `json:"mac,omitempty"`
	Address      string     `json:"address,omitempty"`
	TimeSkew     string     `json:"time_skew,omitempty"`
	TimeServer   string     `json:"time_server,omitempty"`
	TimeError    string     `json:"time_error,omitempty"`
	Preflight    []Check    `json:"preflight,omitempty"`
	LastError    string     `json:"last_error,omitempty"`
	Updated      time.Time  `json:"updated,omitzero"` // absent when not started
}

// Status summarises the state.
func (s *State) Status() Status {
	out := Status{
		Stage: string(s.Stage), Name: s.Enroll.Name, Group: s.Enroll.Group, ControlPlane: s.Enroll.ControlPlane,
		Interface: s.Interface, MAC: s.MAC, TimeError: s.TimeError, Preflight: s.Preflight,
		LastError: s.LastError, Updated: s.Updated,
	}
	if out.ControlPlane == "" && s.cfg != nil && s.cfg.HasKey {
		out.ControlPlane = s.cfg.Key.Host
	}
	if !s.Enroll.CertExpiry.IsZero() {
		t := s.Enroll.CertExpiry
		out.CertExpiry = &t
	}
	if s.Network != nil && s.Network.Address.IsValid() {
		out.Address = s.Network.Address.String()
	}
	if s.Time != nil {
		out.TimeSkew = timesync.FormatOffset(s.Time.Offset)
		if s.Time.Stepped {
			out.TimeSkew += " (corrected)"
		}
		out.TimeServer = s.Time.Server
	}
	switch {
	case s.Updated.IsZero() && len(s.Done) == 0 && s.Stage == "" && s.LastError == "":
		out.State = StateNotStarted
	case s.Enrolled():
		out.State = StateEnrolled
	case s.LastError == ErrNoKey.Error() || strings.HasSuffix(s.LastError, ErrNoKey.Error()):
		out.State = StateWaitingKey
	case s.LastError != "":
		out.State = StateFailed
	default:
		out.State = StateConfiguring
	}
	return out
}

// WriteText renders the status block for people (the `status` command).
func (st Status) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	row("State", st.State)
	if st.State == StateNotStarted {
		if err := tw.Flush(); err != nil {
			return err
		}
		_, err := fmt.Fprintf(w, "First boot has not run on this machine (%s does not exist).\n", StateFile)
		return err
	}
	if st.State != StateEnrolled {
		row("Stage", st.Stage)
	}
	row("Name", st.Name)
	row("Group", st.Group)
	row("Control plane", st.ControlPlane)
	if st.CertExpiry != nil {
		row("Certificate expires", st.CertExpiry.UTC().Format(time.RFC3339))
	}
	if st.Interface != "" {
		row("Network", fmt.Sprintf("%s %s %s", st.Interface, st.MAC, st.Address))
	}
	if st.TimeSkew != "" {
		row("Time skew", st.TimeSkew+" ("+st.TimeServer+")")
	}
	row("Time", st.TimeError)
	if st.LastError != "" {
		row("Last error", strings.ReplaceAll(st.LastError, "\n", "\n\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(st.Preflight) > 0 {
		fmt.Fprintln(w, "\nPreflight:")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, c := range st.Preflight {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", c.Name, strings.ToUpper(c.Status), c.Detail)
		}
		return tw.Flush()
	}
	return nil
}

// Banner renders the console banner (/etc/issue.d), short enough for a
// VM console.
func (st Status) Banner() string {
	var b strings.Builder
	b.WriteString("\n")
	switch st.State {
	case StateEnrolled:
		fmt.Fprintf(&b, "outpost connector %s (group %s): enrolled with %s\n", st.Name, st.Group, st.ControlPlane)
	case StateWaitingKey:
		b.WriteString("outpost connector: waiting for the provisioning key\n")
	case StateFailed:
		fmt.Fprintf(&b, "outpost connector: FAILED at %s\n", st.Stage)
	case StateNotStarted:
		b.WriteString("outpost connector: first boot has not run\n")
	default:
		fmt.Fprintf(&b, "outpost connector: configuring (%s)\n", st.Stage)
	}
	if st.Address != "" {
		fmt.Fprintf(&b, "  address %s on %s (%s)\n", st.Address, st.Interface, st.MAC)
	}
	if st.TimeSkew != "" {
		fmt.Fprintf(&b, "  clock skew %s\n", st.TimeSkew)
	}
	failedRows := false
	for _, c := range st.Preflight {
		if c.Status == Fail || c.Status == Warn {
			fmt.Fprintf(&b, "  %s %s: %s\n", strings.ToUpper(c.Status), c.Name, c.Detail)
			failedRows = failedRows || c.Status == Fail
		}
	}
	if st.LastError != "" && !(failedRows && strings.HasPrefix(st.LastError, "preflight failed")) {
		for _, l := range strings.Split(st.LastError, "\n") {
			fmt.Fprintf(&b, "  %s\n", strings.TrimSpace(l))
		}
	}
	b.WriteString("  details: outpost-firstboot status\n\n")
	// agetty expands backslash escapes in issue files.
	return strings.ReplaceAll(b.String(), `\`, `\\`)
}

// report writes status.json, the console banner and, on VMware, the
// guestinfo.outpost.status variable.
func (e *Env) report(ctx context.Context, st *State) error {
	s := st.Status()
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := e.Root.ReplaceFile(StatusFile, append(b, '\n'), 0o644); err != nil {
		return err
	}
	if err := e.Root.ReplaceFile(IssueFile, []byte(s.Banner()), 0o644); err != nil {
		return err
	}
	if e.RPCTool != nil {
		line := appliance.GuestStatus(s.State, s.Name, s.LastError)
		if _, err := e.RPCTool(ctx, "info-set "+appliance.GuestinfoStatus+" "+line); err != nil {
			e.log().Warn("could not set "+appliance.GuestinfoStatus, "err", err)
		}
	}
	return nil
}

// ReadStatus returns the status of the appliance under root, from the
// persisted state (it survives a reboot; /run does not).
func ReadStatus(root sysroot.Root) (Status, error) {
	st, err := LoadState(root)
	if err != nil {
		return Status{}, err
	}
	return st.Status(), nil
}
