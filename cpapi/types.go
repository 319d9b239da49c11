package cpapi

import (
	"net/url"
	"time"
)

// EnrollRequest is the body of POST PathEnroll.
type EnrollRequest struct {
	Key         string `json:"key"`         // the provisioning key's full text
	CSR         string `json:"csr"`         // PEM PKCS#10
	Fingerprint string `json:"fingerprint"` // key=value pairs separated by ';'
	Nonce       string `json:"nonce"`
}

// EnrollResponse is the answer to a successful enrollment.
type EnrollResponse struct {
	Name        string `json:"name"`
	Group       string `json:"group"`
	Certificate string `json:"certificate"` // PEM chain: leaf, signing CA, root
}

// HeartbeatRequest is the body of POST PathHeartbeat.
type HeartbeatRequest struct {
	Fingerprint string `json:"fingerprint"`
	Version     string `json:"version"`
	Uptime      int64  `json:"uptime"` // seconds
	// Addresses are the connector's IPv4/IPv6 addresses with prefix
	// (192.0.2.10/24).
	Addresses []string `json:"addresses,omitempty"`
	// Skew is the connector's clock minus the control plane's, in seconds,
	// as measured on the previous heartbeat.
	Skew float64 `json:"skew,omitempty"`
	// Upgrade reports an upgrade the control plane ordered: being
	// installed, or failed (the connector is back on its previous
	// version). Absent when there is nothing to report.
	Upgrade *UpgradeReport `json:"upgrade,omitempty"`
}

// Upgrade states a connector reports.
const (
	UpgradeInstalling = "installing" // downloading, checking and writing the bundle
	UpgradeFailed     = "failed"     // refused, or tried and rolled back
)

// UpgradeReport is how a connector reports an upgrade to Version.
type UpgradeReport struct {
	Version string `json:"version"`
	State   string `json:"state"`            // UpgradeInstalling or UpgradeFailed
	Reason  string `json:"reason,omitempty"` // why it failed, for the admin
}

// UpgradeOrder tells a connector to install a release: download Bundle
// (a path on the control plane, GET over mutual TLS), check it, write it to
// the inactive root and reboot into it.
type UpgradeOrder struct {
	Version string `json:"version"`
	Bundle  string `json:"bundle"` // PathReleaseBundle for Version
	Size    int64  `json:"size"`   // the bundle's size in bytes
	// AllowDowngrade lets the connector install a version older than the
	// one it runs (the group was pinned to it with --allow-downgrade).
	AllowDowngrade bool `json:"allow_downgrade,omitempty"`
}

// HeartbeatResponse acknowledges a heartbeat.
type HeartbeatResponse struct {
	Name  string `json:"name"`
	State string `json:"state"`
	// ServerTime is the control plane's clock when it answered, for the
	// connector's skew measurement.
	ServerTime time.Time `json:"server_time,omitzero"`
	// Interval is how often the control plane wants heartbeats, in seconds.
	Interval int `json:"interval,omitempty"`
	// Upgrade, when set, orders the connector to install a release now.
	Upgrade *UpgradeOrder `json:"upgrade,omitempty"`
}

// RenewRequest is the body of POST PathRenew: a CSR for a new key pair,
// sent over mutual TLS with the current certificate.
type RenewRequest struct {
	CSR         string `json:"csr"`
	Fingerprint string `json:"fingerprint"`
}

// RenewResponse carries the new certificate chain (leaf, signing CA, root).
type RenewResponse struct {
	Certificate string `json:"certificate"`
}

// Health is the answer of GET PathHealthz.
type Health struct {
	Status string `json:"status"` // "ok"
}

// Days names the upgrade-window days, Sunday first: GroupSpec.WindowDay
// takes a name, Group.WindowDay is its index.
var Days = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// GroupSpec creates or edits a group. In an edit, nil fields are unchanged.
type GroupSpec struct {
	Name       string  `json:"name"`
	Location   *string `json:"location,omitempty"`
	WindowDay  *string `json:"upgrade_window_day,omitempty"` // sun … sat
	WindowHour *int    `json:"upgrade_window_hour,omitempty"`
	// TargetVersion pins the group to a published release; "latest" (or
	// "") follows the newest published release.
	TargetVersion *string `json:"target_version,omitempty"`
	// AllowDowngrade lets a pinned target older than what connectors run
	// be installed on them (they refuse an older release otherwise).
	AllowDowngrade *bool `json:"allow_downgrade,omitempty"`
}

// TargetLatest is GroupSpec.TargetVersion for "the newest release".
const TargetLatest = "latest"

// Group is a connector group.
type Group struct {
	Name       string    `json:"name"`
	Location   string    `json:"location"`
	WindowDay  int       `json:"upgrade_window_day"`  // 0 Sunday … 6 Saturday
	WindowHour int       `json:"upgrade_window_hour"` // start hour, UTC; the window lasts 4 hours
	CreatedAt  time.Time `json:"created_at"`
	Keys       int       `json:"keys"`
	Connectors int       `json:"connectors"` // not revoked
	// TargetVersion is the pinned release; "" follows the newest one.
	TargetVersion string `json:"target_version"`
	// AllowDowngrade: connectors newer than the pinned target are brought
	// down to it.
	AllowDowngrade bool `json:"allow_downgrade"`
	// Rollout is the group's upgrade state (GET PathGroup only).
	Rollout *Rollout `json:"rollout,omitempty"`
}

// Rollout states.
const (
	RolloutIdle      = "idle"      // every connector runs the target (or none is published)
	RolloutWaiting   = "waiting"   // outside the window, or the group is not healthy
	RolloutUpgrading = "upgrading" // one connector is being upgraded
	RolloutStopped   = "stopped"   // a connector failed; Reason says which and why
)

// Rollout is a group's upgrade to its target version. One connector is
// upgraded at a time, inside the group's window (or after
// PathGroupUpgrade), and only while the others are healthy.
type Rollout struct {
	Target string `json:"target"` // the version connectors are brought to; "" none published
	State  string `json:"state"`  // RolloutIdle …
	Reason string `json:"reason,omitempty"`
	// Now is set when an admin started the rollout outside the window; it
	// ends with the rollout.
	Now bool `json:"now"`
	// WindowOpen says whether the group's window is open; NextWindow is
	// when it next opens (zero while it is open).
	WindowOpen bool      `json:"window_open"`
	NextWindow time.Time `json:"next_window,omitzero"`
	// Connectors are the group's connectors (not revoked), by name.
	Connectors []RolloutConnector `json:"connectors"`
}

// Rollout states of one connector.
const (
	RolloutDone    = "done"      // runs the target
	RolloutActive  = "upgrading" // ordered to upgrade, not back healthy on the target yet
	RolloutPending = "waiting"   // older than the target, its turn has not come
	RolloutFailed  = "failed"    // its upgrade failed; Detail says why
	RolloutNewer   = "newer"     // runs a version newer than the target; left alone
)

// RolloutConnector is one connector in a rollout.
type RolloutConnector struct {
	Name    string    `json:"name"`
	Version string    `json:"version"`
	Health  string    `json:"health"`
	Status  string    `json:"status"` // RolloutDone …
	Detail  string    `json:"detail,omitempty"`
	Since   time.Time `json:"since,omitzero"` // when its upgrade was ordered
}

// Release is a published update bundle.
type Release struct {
	Name         string    `json:"name"` // the appliance's name
	Version      string    `json:"version"`
	Architecture string    `json:"architecture"`
	Size         int64     `json:"size"`       // the bundle's size in bytes
	SHA256       string    `json:"sha256"`     // the bundle file's SHA-256, hex
	ImageSize    int64     `json:"image_size"` // the root image's size in bytes
	PublishedAt  time.Time `json:"published_at"`
}

// UpgradeNow is the body of POST PathGroupUpgrade.
type UpgradeNow struct{}

// Deleted answers a DELETE.
type Deleted struct {
	Deleted string `json:"deleted"` // the name
}

// Key states as stored; the CLI derives "expired" and "exhausted" from
// KeyInfo.
const (
	KeyActive  = "active"
	KeyRevoked = "revoked"
)

// KeySpec creates a key.
type KeySpec struct {
	Name      string `json:"name"`
	Group     string `json:"group"`
	MaxUses   int64  `json:"max_uses"`
	ExpiresIn string `json:"expires_in,omitempty"` // see ParseExpiresIn; empty: DefaultExpiry
	SigningCA string `json:"signing_ca,omitempty"` // empty: Connector
}

// KeyEdit is the body of PATCH PathKey.
type KeyEdit struct {
	MaxUses *int64 `json:"max_uses"` // required; not below the use count
}

// KeyFilter selects keys in GET PathKeys; empty fields match everything.
type KeyFilter struct {
	Group, Name string
	State       string // KeyActive or KeyRevoked
}

// Values encodes f as query parameters.
func (f KeyFilter) Values() url.Values {
	q := url.Values{}
	for _, p := range []struct{ name, v string }{{QueryGroup, f.Group}, {QueryName, f.Name}, {QueryState, f.State}} {
		if p.v != "" {
			q.Set(p.name, p.v)
		}
	}
	return q
}

// KeyFilterFrom decodes query parameters made by KeyFilter.Values.
func KeyFilterFrom(q url.Values) KeyFilter {
	return KeyFilter{Group: q.Get(QueryGroup), Name: q.Get(QueryName), State: q.Get(QueryState)}
}

// Key is a provisioning key's record, without its secret.
type Key struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Group      string    `json:"group"`
	SigningCA  string    `json:"signing_ca"`
	Host       string    `json:"host"` // HOST[:PORT] of the control plane written in the key
	Pin        string    `json:"pin"`  // sha256:… of the root CA's public key
	MaxUses    int64     `json:"max_uses"`
	UseCount   int64     `json:"use_count"`
	ExpiresAt  time.Time `json:"expires_at"` // zero: never
	State      string    `json:"state"`      // KeyActive or KeyRevoked
	Generation int64     `json:"generation"` // bumped by each regeneration
	CreatedAt  time.Time `json:"created_at"`
}

// KeyInfo is a key as the admin sees it.
type KeyInfo struct {
	Key
	Redacted string `json:"redacted"` // the key's text with the secret left out
	Expired  bool   `json:"expired"`
}

// KeyText is a key's full text, returned only on create, reveal and
// regenerate.
type KeyText struct {
	KeyInfo
	Text string `json:"text"`
}

// Connector states.
const (
	ConnectorActive  = "active"
	ConnectorBlocked = "blocked"
	ConnectorRevoked = "revoked"
)

// Connector health, derived by the control plane from the state and the
// heartbeats; HealthUnreachable after UnreachableAfter intervals without a
// heartbeat.
const (
	HealthHealthy     = "healthy"
	HealthUnreachable = "unreachable"
	HealthBlocked     = "blocked"
	HealthRevoked     = "revoked"
	HealthNeverSeen   = "never seen"
)

// UnreachableAfter is how many heartbeat intervals a connector may miss
// before it is unreachable.
const UnreachableAfter = 3

// Connector is an enrolled appliance.
type Connector struct {
	Name        string    `json:"name"`
	KeyID       string    `json:"key_id"`
	KeyName     string    `json:"key"`
	Group       string    `json:"group"`
	SigningCA   string    `json:"signing_ca"`
	Fingerprint string    `json:"fingerprint"`
	PubKeyHash  string    `json:"public_key_sha256"`
	Nonce       string    `json:"nonce"`
	Serial      string    `json:"serial"`
	CertPEM     string    `json:"certificate"`
	CertExpires time.Time `json:"certificate_expires"`
	EnrolledAt  time.Time `json:"enrolled_at"`
	LastSeen    time.Time `json:"last_seen"` // zero: never
	Version     string    `json:"version"`
	Uptime      int64     `json:"uptime_seconds"`
	State       string    `json:"state"`
	StateReason string    `json:"state_reason,omitempty"`
	Health      string    `json:"health"`    // HealthHealthy …
	Addresses   []string  `json:"addresses"` // as last reported, never null
	Skew        float64   `json:"skew"`      // seconds, the connector's clock minus the control plane's, as last reported
	// UpgradeTarget is the version the connector was ordered to install
	// ("" none); UpgradeState and UpgradeReason are what it last reported
	// about an upgrade (UpgradeInstalling, UpgradeFailed).
	UpgradeTarget string `json:"upgrade_target,omitempty"`
	UpgradeState  string `json:"upgrade_state,omitempty"`
	UpgradeReason string `json:"upgrade_reason,omitempty"`
}

// RevokeResult says what revoking a connector did.
type RevokeResult struct {
	Connector   Connector `json:"connector"`
	Regenerated []string  `json:"regenerated_keys"` // the keys of its group, never null
}
