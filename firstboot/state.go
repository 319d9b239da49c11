package firstboot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/outpost-appliance/outpost/firstboot/config"
	"github.com/outpost-appliance/outpost/firstboot/netconf"
	"github.com/outpost-appliance/outpost/firstboot/sysroot"
	"github.com/outpost-appliance/outpost/firstboot/timesync"
)

// Files first boot owns, inside the root.
const (
	StateFile  = "/var/lib/outpost/firstboot.json"
	StatusFile = "/run/outpost/status.json"
	IssueFile  = "/etc/issue.d/outpost.issue"
	CertFile   = "/etc/outpost/tls/connector.crt"
	KeyFile    = "/etc/outpost/tls/connector.key"
)

const stateVersion = 1

// State is first boot's progress, persisted after every step so that a run
// killed at any point resumes where it stopped. It never holds the
// provisioning key or the private key.
type State struct {
	Version int                     `json:"version"`
	Done    map[StageName]time.Time `json:"done"`
	Stage   StageName               `json:"stage,omitempty"` // running or last failed

	Config    *config.Config `json:"config,omitempty"`
	Interface string         `json:"interface,omitempty"`
	MAC       string         `json:"mac,omitempty"`
	Network   *netconf.Lease `json:"network,omitempty"` // effective: DHCP lease or static

	Time      *timesync.Result `json:"time,omitempty"`
	TimeError string           `json:"time_error,omitempty"`
	// ClockCorrection is added to the system clock for certificate checks
	// when the clock could not be stepped (e.g. under --root in a test).
	ClockCorrection time.Duration `json:"clock_correction,omitempty"`

	Preflight []Check `json:"preflight,omitempty"`

	Enroll Enrollment `json:"enroll"`

	LastError string    `json:"last_error,omitempty"`
	Updated   time.Time `json:"updated"`

	cfg *config.Config // with the key; never persisted
}

// Enrollment is the persisted part of enrollment. CSR, nonce and
// fingerprint are kept so that a retry after a crash sends the same request
// and the control plane counts one use.
type Enrollment struct {
	CSR          string    `json:"csr,omitempty"`
	Nonce        string    `json:"nonce,omitempty"`
	Fingerprint  string    `json:"fingerprint,omitempty"`
	KeyID        string    `json:"key_id,omitempty"`
	ControlPlane string    `json:"control_plane,omitempty"`
	Name         string    `json:"name,omitempty"`
	Group        string    `json:"group,omitempty"`
	CertExpiry   time.Time `json:"cert_expiry,omitzero"`
	At           time.Time `json:"at,omitzero"`
}

// Enrolled reports whether enrollment completed.
func (s *State) Enrolled() bool { return s.Enroll.Name != "" }

// LoadState reads the state under root; a missing file is a fresh state.
func LoadState(root sysroot.Root) (*State, error) {
	st := &State{Version: stateVersion, Done: map[StageName]time.Time{}}
	b, err := root.ReadFile(StateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", StateFile, err)
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("%s is damaged (%v); move it away to start first boot again (a completed enrollment is kept in %s)", StateFile, err, CertFile)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("%s: version %d, this outpost-firstboot reads version %d", StateFile, st.Version, stateVersion)
	}
	if st.Done == nil {
		st.Done = map[StageName]time.Time{}
	}
	return st, nil
}

// Save writes the state atomically (temp file, fsync, rename).
func (s *State) Save(root sysroot.Root, now time.Time) error {
	s.Updated = now.UTC()
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return root.WriteFile(StateFile, append(b, '\n'), 0o600)
}
