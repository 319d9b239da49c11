package cpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestWireFormat pins the JSON of every type byte for byte: scripts and
// deployed appliances rely on these names, so a change here is a change of
// the API, not a refactoring.
func TestWireFormat(t *testing.T) {
	t1 := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	t2 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	k := Key{ID: "16ae02bf1ad591a2", Name: "Melbourne", Group: "melb", SigningCA: "Connector", Host: "cp.example.com:8443", Pin: "sha256:ab", MaxUses: 2, UseCount: 1, ExpiresAt: t2, State: "active", Generation: 3, CreatedAt: t1}
	ki := KeyInfo{Key: k, Redacted: "1|cp|AB…", Expired: true}
	c := Connector{Name: "Melbourne-1", KeyID: "16ae", KeyName: "Melbourne", Group: "melb", SigningCA: "Connector", Fingerprint: "mac=x", PubKeyHash: "ph", Nonce: "n", Serial: "0a", CertPEM: "PEM", CertExpires: t2, EnrolledAt: t1, LastSeen: t1, Version: "1.0", Uptime: 42, State: "blocked", StateReason: "why",
		Health: "blocked", Addresses: []string{"192.0.2.10/24", "2001:db8::10/64"}, Skew: 0.002}
	c2 := c
	c2.StateReason, c2.LastSeen, c2.Health, c2.Addresses, c2.Skew = "", time.Time{}, "never seen", []string{}, 0
	loc, day, hour := "x", "sat", 3
	max := int64(4)
	latest := TargetLatest
	for _, tc := range []struct {
		v    any
		want string
	}{
		{ki, `{"id":"16ae02bf1ad591a2","name":"Melbourne","group":"melb","signing_ca":"Connector","host":"cp.example.com:8443","pin":"sha256:ab","max_uses":2,"use_count":1,"expires_at":"2026-12-06T12:00:00Z","state":"active","generation":3,"created_at":"2026-11-22T12:00:00Z","redacted":"1|cp|AB…","expired":true}`},
		{KeyText{KeyInfo: ki, Text: "1|cp|ABC"}, `{"id":"16ae02bf1ad591a2","name":"Melbourne","group":"melb","signing_ca":"Connector","host":"cp.example.com:8443","pin":"sha256:ab","max_uses":2,"use_count":1,"expires_at":"2026-12-06T12:00:00Z","state":"active","generation":3,"created_at":"2026-11-22T12:00:00Z","redacted":"1|cp|AB…","expired":true,"text":"1|cp|ABC"}`},
		{Group{Name: "melb", Location: "Melbourne DC", WindowDay: 6, WindowHour: 1, CreatedAt: t1, Keys: 2, Connectors: 3}, `{"name":"melb","location":"Melbourne DC","upgrade_window_day":6,"upgrade_window_hour":1,"created_at":"2026-11-22T12:00:00Z","keys":2,"connectors":3,"target_version":"","allow_downgrade":false}`},
		{Group{Name: "melb", TargetVersion: "1.2.0", CreatedAt: t1, Rollout: &Rollout{Target: "1.2.0", State: RolloutUpgrading, Reason: "r", Now: true, WindowOpen: false, NextWindow: t2,
			Connectors: []RolloutConnector{{Name: "m-1", Version: "1.1", Health: "healthy", Status: RolloutActive, Detail: "installing 1.2.0", Since: t1}, {Name: "m-2", Version: "1.2.0", Health: "healthy", Status: RolloutDone}}}},
			`{"name":"melb","location":"","upgrade_window_day":0,"upgrade_window_hour":0,"created_at":"2026-11-22T12:00:00Z","keys":0,"connectors":0,"target_version":"1.2.0","allow_downgrade":false,"rollout":{"target":"1.2.0","state":"upgrading","reason":"r","now":true,"window_open":false,"next_window":"2026-12-06T12:00:00Z","connectors":[{"name":"m-1","version":"1.1","health":"healthy","status":"upgrading","detail":"installing 1.2.0","since":"2026-11-22T12:00:00Z"},{"name":"m-2","version":"1.2.0","health":"healthy","status":"done"}]}}`},
		{Release{Name: "outpost-connector", Version: "1.2.0", Architecture: "amd64", Size: 10, SHA256: "ab", ImageSize: 20, PublishedAt: t1}, `{"name":"outpost-connector","version":"1.2.0","architecture":"amd64","size":10,"sha256":"ab","image_size":20,"published_at":"2026-11-22T12:00:00Z"}`},
		{HeartbeatRequest{Fingerprint: "f", Version: "1", Uptime: 5, Upgrade: &UpgradeReport{Version: "2", State: UpgradeFailed, Reason: "r"}}, `{"fingerprint":"f","version":"1","uptime":5,"upgrade":{"version":"2","state":"failed","reason":"r"}}`},
		{HeartbeatResponse{Name: "a-1", State: "active", Upgrade: &UpgradeOrder{Version: "2", Bundle: "/api/v1/releases/2/bundle", Size: 9}}, `{"name":"a-1","state":"active","upgrade":{"version":"2","bundle":"/api/v1/releases/2/bundle","size":9}}`},
		{GroupSpec{Name: "x", TargetVersion: &latest}, `{"name":"x","target_version":"latest"}`},
		{UpgradeNow{}, `{}`},
		{c, `{"name":"Melbourne-1","key_id":"16ae","key":"Melbourne","group":"melb","signing_ca":"Connector","fingerprint":"mac=x","public_key_sha256":"ph","nonce":"n","serial":"0a","certificate":"PEM","certificate_expires":"2026-12-06T12:00:00Z","enrolled_at":"2026-11-22T12:00:00Z","last_seen":"2026-11-22T12:00:00Z","version":"1.0","uptime_seconds":42,"state":"blocked","state_reason":"why","health":"blocked","addresses":["192.0.2.10/24","2001:db8::10/64"],"skew":0.002}`},
		{RevokeResult{Connector: c2, Regenerated: []string{}}, `{"connector":{"name":"Melbourne-1","key_id":"16ae","key":"Melbourne","group":"melb","signing_ca":"Connector","fingerprint":"mac=x","public_key_sha256":"ph","nonce":"n","serial":"0a","certificate":"PEM","certificate_expires":"2026-12-06T12:00:00Z","enrolled_at":"2026-11-22T12:00:00Z","last_seen":"0001-01-01T00:00:00Z","version":"1.0","uptime_seconds":42,"state":"blocked","health":"never seen","addresses":[],"skew":0},"regenerated_keys":[]}`},
		{GroupSpec{Name: "melb", Location: &loc, WindowDay: &day, WindowHour: &hour}, `{"name":"melb","location":"x","upgrade_window_day":"sat","upgrade_window_hour":3}`},
		{GroupSpec{Name: "x"}, `{"name":"x"}`},
		{KeySpec{Name: "K", Group: "g", MaxUses: 2, ExpiresIn: "14d", SigningCA: "Connector"}, `{"name":"K","group":"g","max_uses":2,"expires_in":"14d","signing_ca":"Connector"}`},
		{KeySpec{Name: "K", Group: "g", MaxUses: 2}, `{"name":"K","group":"g","max_uses":2}`},
		{KeyEdit{MaxUses: &max}, `{"max_uses":4}`},
		{EnrollRequest{Key: "k", CSR: "c", Fingerprint: "f", Nonce: "n"}, `{"key":"k","csr":"c","fingerprint":"f","nonce":"n"}`},
		{EnrollResponse{Name: "a-1", Group: "a", Certificate: "PEM"}, `{"name":"a-1","group":"a","certificate":"PEM"}`},
		{HeartbeatRequest{Fingerprint: "f", Version: "1", Uptime: 5}, `{"fingerprint":"f","version":"1","uptime":5}`},
		{HeartbeatRequest{Fingerprint: "f", Version: "1", Uptime: 5, Addresses: []string{"192.0.2.10/24"}, Skew: -0.25}, `{"fingerprint":"f","version":"1","uptime":5,"addresses":["192.0.2.10/24"],"skew":-0.25}`},
		{HeartbeatResponse{Name: "a-1", State: "active"}, `{"name":"a-1","state":"active"}`},
		{HeartbeatResponse{Name: "a-1", State: "active", ServerTime: t1, Interval: 10}, `{"name":"a-1","state":"active","server_time":"2026-11-22T12:00:00Z","interval":10}`},
		{RenewRequest{CSR: "c", Fingerprint: "f"}, `{"csr":"c","fingerprint":"f"}`},
		{RenewResponse{Certificate: "PEM"}, `{"certificate":"PEM"}`},
		{Health{Status: "ok"}, `{"status":"ok"}`},
		{Deleted{Deleted: "melb"}, `{"deleted":"melb"}`},
		{&Error{Code: CodeKeyRevoked, Message: "m"}, `{"error":"key_revoked","message":"m"}`},
	} {
		b, err := json.Marshal(tc.v)
		if err != nil || string(b) != tc.want {
			t.Errorf("%T:\n got %s %v\nwant %s", tc.v, b, err, tc.want)
		}
	}
}

func TestPath(t *testing.T) {
	for _, tc := range []struct{ route, name, want string }{
		{PathKey, "Melbourne", "/api/v1/keys/Melbourne"},
		{PathKeyReveal, "a b/c", "/api/v1/keys/a%20b%2Fc/reveal"},
		{PathConnectorRevoke, "Melbourne-1", "/api/v1/connectors/Melbourne-1/revoke"},
		{PathGroup, "melb", "/api/v1/groups/melb"},
		{PathReleaseBundle, "1.2.0+g1", "/api/v1/releases/1.2.0+g1/bundle"},
	} {
		if got := Path(tc.route, tc.name); got != tc.want {
			t.Errorf("Path(%q, %q) = %q, want %q", tc.route, tc.name, got, tc.want)
		}
	}
	if q := (KeyFilter{Group: "g", State: KeyRevoked}).Values(); q.Encode() != "group=g&state=revoked" || KeyFilterFrom(q) != (KeyFilter{Group: "g", State: KeyRevoked}) {
		t.Errorf("KeyFilter round trip: %q", q.Encode())
	}
}

func TestErrorMatching(t *testing.T) {
	err := fmt.Errorf("reveal Melbourne: %w", &Error{Code: CodeKeyExhausted, Message: "Melbourne has been used 2 of 2 times"})
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeKeyExhausted {
		t.Fatalf("errors.As: %v", err)
	}
	if !IsCode(err, CodeKeyExhausted) || IsCode(err, CodeKeyRevoked) || IsCode(errors.New(CodeKeyExhausted), CodeKeyExhausted) {
		t.Error("IsCode matches the wrong errors")
	}
	if !errors.Is(err, &Error{Code: CodeKeyExhausted}) || errors.Is(err, &Error{Code: CodeConflict}) {
		t.Error("errors.Is does not match by code")
	}
	if got := e.Error(); got != "Melbourne has been used 2 of 2 times (key_exhausted)" {
		t.Errorf("Error() = %q", got)
	}
}

func TestCheckUpgradeReport(t *testing.T) {
	for _, tc := range []struct {
		r  UpgradeReport
		ok bool
	}{
		{UpgradeReport{Version: "1.2.0", State: UpgradeInstalling}, true},
		{UpgradeReport{Version: "1.2.0", State: UpgradeFailed, Reason: "the bundle's signature is not trusted"}, true},
		{UpgradeReport{Version: "", State: UpgradeFailed}, false},
		{UpgradeReport{Version: "1.2.0", State: "done"}, false},
		{UpgradeReport{Version: "1.2.0", State: UpgradeFailed, Reason: "two\nlines"}, false},
		{UpgradeReport{Version: "1.2.0", State: UpgradeFailed, Reason: string(make([]byte, MaxUpgradeReason+1))}, false},
	} {
		if err := CheckUpgradeReport(tc.r); (err == nil) != tc.ok {
			t.Errorf("%+v: %v", tc.r, err)
		}
	}
}

// TestCleanUpgradeReason: whatever an installation's error says, the
// cleaned reason passes the control plane's check.
func TestCleanUpgradeReason(t *testing.T) {
	for _, reason := range []string{
		"line one\nline two\tand a tab",
		"C1 \u0085 next line and \x7f delete",
		strings.Repeat("é", 2000),
		"bad utf-8 \xff\xfe",
	} {
		r := UpgradeReport{Version: "1.2.0", State: UpgradeFailed, Reason: CleanUpgradeReason(reason)}
		if err := CheckUpgradeReport(r); err != nil {
			t.Errorf("CleanUpgradeReason(%.20q) = %.40q, refused: %v", reason, r.Reason, err)
		}
	}
	if got := CleanUpgradeReason("a\nb"); got != "a b" {
		t.Errorf("CleanUpgradeReason(a\\nb) = %q", got)
	}
}
