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
}

// Group is a connector group.
type Group struct {
	Name       string    `json:"name"`
	Location   string    `json:"location"`
	WindowDay  int       `json:"upgrade_window_day"`  // 0 Sunday … 6 Saturday
	WindowHour int       `json:"upgrade_window_hour"` // start hour, UTC; the window lasts 4 hours
	CreatedAt  time.Time `json:"created_at"`
	Keys       int       `json:"keys"`
	Connectors int       `json:"connectors"` // not revoked
}

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
}

// RevokeResult says what revoking a connector did.
type RevokeResult struct {
	Connector   Connector `json:"connector"`
	Regenerated []string  `json:"regenerated_keys"` // the keys of its group, never null
}
