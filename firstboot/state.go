package firstboot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"time"

	"github.com/outpost-appliance/outpost/appliance"
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
	// The connector's identity lives on the data partition, which
	// upgrades keep.
	CertFile = appliance.CertFile
	KeyFile  = appliance.KeyFile
)

const stateVersion = 1

// State is first boot's progress, persisted after every step so that a run
// killed at any point resumes where it stopped. It never holds the
// provisioning key or the private key.
type State struct {
	Version int                     `json:"version"`
	Done    map[StageName]time.Time `json:"done"`
	Stage   StageName               `json:"stage,omitempty"` // running or last failed

	// Each stage's typed result, read by the stages after it. The embedded
	// results keep their fields at the top level of the JSON.

	Config *config.Config `json:"config,omitempty"` // the config stage's (without the key)
	Networking
	TimeCheck
	Preflight []Check    `json:"preflight,omitempty"`
	Enroll    Enrollment `json:"enroll"`

	LastError string    `json:"last_error,omitempty"`
	Updated   time.Time `json:"updated"`

	cfg *config.Config // with the key; never persisted
}

// Networking is the network stage's result: the primary NIC, the address
// in effect, and the DNS and NTP settings resolved once from the static
// configuration and the DHCP lease, which the DNS, time, preflight and
// enroll stages use as they are.
type Networking struct {
	Interface string         `json:"interface,omitempty"`
	MAC       string         `json:"mac,omitempty"`
	Network   *netconf.Lease `json:"network,omitempty"` // effective: DHCP lease or static

	DNS    []netip.Addr `json:"dns,omitempty"`
	Search []string     `json:"dns_search,omitempty"`
	NTP    []string     `json:"ntp,omitempty"`
}

// resolve fills in the settings in effect: the configuration's where it
// gives them, else the lease's.
func (n Networking) resolve(c *config.Config) Networking {
	n.DNS, n.Search, n.NTP = c.DNSServers, c.DNSSearch, c.NTPServers
	if l := n.Network; l != nil {
		if len(n.DNS) == 0 {
			n.DNS = l.DNS
		}
		if len(n.Search) == 0 {
			n.Search = l.Search
		}
		if len(n.NTP) == 0 {
			n.NTP = l.NTP
		}
	}
	return n
}

// TimeCheck is the time stage's result.
type TimeCheck struct {
	Time      *timesync.Result `json:"time,omitempty"`
	TimeError string           `json:"time_error,omitempty"`
	// ClockCorrection is added to the system clock for certificate checks
	// when the clock could not be stepped (e.g. under --root in a test).
	ClockCorrection time.Duration `json:"clock_correction,omitempty"`
}

// Clock returns the time certificate checks use: now corrected by what
// the time stage could not step.
func (t TimeCheck) Clock(now func() time.Time) func() time.Time {
	return func() time.Time { return now().Add(t.ClockCorrection) }
}

// setConfig records the configuration the config stage (or preflight,
// when a key arrived while it waited) loaded.
func (s *State) setConfig(c *config.Config) { s.cfg, s.Config = c, c }

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
