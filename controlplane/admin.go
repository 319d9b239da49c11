package controlplane

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-appliance/outpost/controlplane/store"
	"github.com/outpost-appliance/outpost/provkey"
)

// Days names the upgrade-window days, Sunday first.
var Days = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// DefaultExpiry is the lifetime of a key created without --expires-in.
const DefaultExpiry = 14 * 24 * time.Hour

// ParseExpiresIn parses "never" (0, true) or a duration such as 14d, 36h,
// 90m or 1d12h.
func ParseExpiresIn(s string) (d time.Duration, never bool, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return DefaultExpiry, false, nil
	}
	if strings.EqualFold(s, "never") {
		return 0, true, nil
	}
	rest := s
	if i := strings.Index(rest, "d"); i >= 0 {
		n, err := strconv.Atoi(rest[:i])
		if err != nil || n < 0 {
			return 0, false, fmt.Errorf("expiry %q: want a duration like 14d, 36h or 1d12h, or never", s)
		}
		d = time.Duration(n) * 24 * time.Hour
		rest = rest[i+1:]
	}
	if rest != "" {
		x, err := time.ParseDuration(rest)
		if err != nil {
			return 0, false, fmt.Errorf("expiry %q: want a duration like 14d, 36h or 1d12h, or never", s)
		}
		d += x
	}
	if d <= 0 {
		return 0, false, fmt.Errorf("expiry %q: must be positive (or never)", s)
	}
	return d, false, nil
}

func notFound(kind, name, hint string) *Error {
	return refuse(404, CodeNotFound, "no %s named %q; %s", kind, name, hint)
}

func validName(kind, name string) *Error {
	if name == "" || len(name) > 64 {
		return refuse(400, CodeBadRequest, "%s name must be 1 to 64 characters", kind)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return refuse(400, CodeBadRequest, "%s name %q: %q is not allowed; use letters, digits, '-', '_' and '.'", kind, name, c)
		}
	}
	return nil
}

// GroupSpec creates or edits a group. In an edit, nil fields are unchanged.
type GroupSpec struct {
	Name       string  `json:"name"`
	Location   *string `json:"location,omitempty"`
	WindowDay  *string `json:"upgrade_window_day,omitempty"` // sun … sat
	WindowHour *int    `json:"upgrade_window_hour,omitempty"`
}

func applyGroup(g *store.Group, sp GroupSpec) *Error {
	if sp.Location != nil {
		g.Location = *sp.Location
	}
	if sp.WindowDay != nil {
		d := -1
		for i, n := range Days {
			if strings.EqualFold(*sp.WindowDay, n) || len(*sp.WindowDay) > 3 && strings.HasPrefix(strings.ToLower(*sp.WindowDay), n) {
				d = i
			}
		}
		if d < 0 {
			return refuse(400, CodeBadRequest, "upgrade window day %q: use one of %s", *sp.WindowDay, strings.Join(Days, ", "))
		}
		g.WindowDay = d
	}
	if sp.WindowHour != nil {
		if *sp.WindowHour < 0 || *sp.WindowHour > 23 {
			return refuse(400, CodeBadRequest, "upgrade window start hour %d: use 0 to 23 (UTC)", *sp.WindowHour)
		}
		g.WindowHour = *sp.WindowHour
	}
	return nil
}

// CreateGroup adds a group; the window defaults to Sunday 02:00–06:00 UTC.
func (s *Service) CreateGroup(ctx context.Context, sp GroupSpec) (store.Group, error) {
	if e := validName("group", sp.Name); e != nil {
		return store.Group{}, e
	}
	g := store.Group{Name: sp.Name, WindowDay: 0, WindowHour: 2, CreatedAt: s.Now()}
	if e := applyGroup(&g, sp); e != nil {
		return g, e
	}
	if err := s.Store.CreateGroup(ctx, g); errors.Is(err, store.ErrExists) {
		return g, refuse(409, CodeExists, "a group named %q already exists; choose another name or edit it with 'outpost groups edit'", sp.Name)
	} else if err != nil {
		return g, s.internal(err)
	}
	return s.Group(ctx, sp.Name)
}

// Groups lists groups.
func (s *Service) Groups(ctx context.Context) ([]store.Group, error) {
	gs, err := s.Store.Groups(ctx)
	if err != nil {
		return nil, s.internal(err)
	}
	return gs, nil
}

// Group returns one group.
func (s *Service) Group(ctx context.Context, name string) (store.Group, error) {
	g, err := s.Store.Group(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return g, notFound("group", name, "list groups with 'outpost groups list'")
	} else if err != nil {
		return g, s.internal(err)
	}
	return g, nil
}

// EditGroup changes a group's location or window.
func (s *Service) EditGroup(ctx context.Context, sp GroupSpec) (store.Group, error) {
	g, err := s.Group(ctx, sp.Name)
	if err != nil {
		return g, err
	}
	if e := applyGroup(&g, sp); e != nil {
		return g, e
	}
	if err := s.Store.UpdateGroup(ctx, g); err != nil {
		return g, s.internal(err)
	}
	return s.Group(ctx, sp.Name)
}

// DeleteGroup deletes a group; one with keys or connectors needs force.
func (s *Service) DeleteGroup(ctx context.Context, name string, force bool) error {
	g, err := s.Group(ctx, name)
	if err != nil {
		return err
	}
	if !force && (g.Keys > 0 || g.Connectors > 0) {
		return refuse(409, CodeConflict, "group %s still has %d keys and %d connectors; delete or move them first, or delete with --force (its keys are deleted and its connectors revoked)", name, g.Keys, g.Connectors)
	}
	if err := s.Store.DeleteGroup(ctx, name, force, s.Now()); errors.Is(err, store.ErrNotFound) {
		return notFound("group", name, "list groups with 'outpost groups list'")
	} else if err != nil {
		return s.internal(err)
	}
	s.Log.Info("group deleted", "group", name, "force", force)
	return nil
}

// KeySpec creates a key.
type KeySpec struct {
	Name      string `json:"name"`
	Group     string `json:"group"`
	MaxUses   int64  `json:"max_uses"`
	ExpiresIn string `json:"expires_in,omitempty"` // "14d", "36h", "never"; empty: 14 days
	SigningCA string `json:"signing_ca,omitempty"` // empty: Connector
}

// KeyInfo is a key as the admin sees it.
type KeyInfo struct {
	store.Key
	Redacted string `json:"redacted"`
	Expired  bool   `json:"expired"`
}

// KeyText is a key's full text, returned only on create, reveal and regenerate.
type KeyText struct {
	KeyInfo
	Text string `json:"text"`
}

func (s *Service) info(k store.Key) KeyInfo {
	return KeyInfo{Key: k, Redacted: s.skeleton(k).Redacted(), Expired: !k.ExpiresAt.IsZero() && !s.Now().Before(k.ExpiresAt)}
}

// CreateKey makes a provisioning key.
func (s *Service) CreateKey(ctx context.Context, sp KeySpec) (KeyText, error) {
	if e := validName("key", sp.Name); e != nil {
		return KeyText{}, e
	}
	if sp.MaxUses < 1 {
		return KeyText{}, refuse(400, CodeBadRequest, "maximum uses must be at least 1 (got %d)", sp.MaxUses)
	}
	if sp.SigningCA == "" {
		sp.SigningCA = "Connector"
	}
	if s.Authority.Signing[sp.SigningCA] == nil {
		var names []string
		for n := range s.Authority.Signing {
			names = append(names, n)
		}
		sort.Strings(names)
		return KeyText{}, refuse(400, CodeBadRequest, "no signing CA named %q; this server has %s", sp.SigningCA, strings.Join(names, ", "))
	}
	d, never, err := ParseExpiresIn(sp.ExpiresIn)
	if err != nil {
		return KeyText{}, refuse(400, CodeBadRequest, "%v", err)
	}
	pin := provkey.PinOf(s.Authority.Root.Cert)
	pk, err := provkey.Generate(s.KeyHost, pin, nil)
	if err != nil {
		return KeyText{}, s.internal(err)
	}
	sealed, err := s.seal(pk.ID, pk.Secret[:])
	if err != nil {
		return KeyText{}, s.internal(err)
	}
	h := pk.SecretHash()
	now := s.Now()
	k := store.Key{ID: pk.ID.String(), Name: sp.Name, Group: sp.Group, SigningCA: sp.SigningCA, Host: pk.Host, Pin: pin.String(),
		MaxUses: sp.MaxUses, State: store.KeyActive, SecretHash: hex.EncodeToString(h[:]), Sealed: sealed, CreatedAt: now}
	if !never {
		k.ExpiresAt = now.Add(d)
	}
	switch err := s.Store.CreateKey(ctx, k); {
	case errors.Is(err, store.ErrExists):
		return KeyText{}, refuse(409, CodeExists, "a key named %q already exists; choose another name, or 'outpost keys regenerate %s' for a new secret", sp.Name, sp.Name)
	case errors.Is(err, store.ErrNotFound):
		return KeyText{}, notFound("group", sp.Group, "create it with 'outpost groups create "+sp.Group+"'")
	case err != nil:
		return KeyText{}, s.internal(err)
	}
	s.Log.Info("key created", "key", sp.Name, "key_id", k.ID, "group", sp.Group, "max_uses", sp.MaxUses)
	return s.keyText(ctx, sp.Name)
}

func (s *Service) keyText(ctx context.Context, name string) (KeyText, error) {
	k, err := s.key(ctx, name)
	if err != nil {
		return KeyText{}, err
	}
	pk, err := s.unseal(k)
	if err != nil {
		return KeyText{}, s.internal(err)
	}
	return KeyText{KeyInfo: s.info(k), Text: pk.Reveal()}, nil
}

func (s *Service) key(ctx context.Context, name string) (store.Key, error) {
	k, err := s.Store.KeyByName(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return k, notFound("key", name, "list keys with 'outpost keys list'")
	} else if err != nil {
		return k, s.internal(err)
	}
	return k, nil
}

// Keys lists keys.
func (s *Service) Keys(ctx context.Context, f store.KeyFilter) ([]KeyInfo, error) {
	ks, err := s.Store.Keys(ctx, f)
	if err != nil {
		return nil, s.internal(err)
	}
	out := make([]KeyInfo, len(ks))
	for i, k := range ks {
		out[i] = s.info(k)
	}
	return out, nil
}

// Key returns one key, redacted.
func (s *Service) Key(ctx context.Context, name string) (KeyInfo, error) {
	k, err := s.key(ctx, name)
	if err != nil {
		return KeyInfo{}, err
	}
	return s.info(k), nil
}

// RevealKey returns a key's text, unless it cannot enroll anything more.
func (s *Service) RevealKey(ctx context.Context, name string) (KeyText, error) {
	k, err := s.key(ctx, name)
	if err != nil {
		return KeyText{}, err
	}
	if k.UseCount >= k.MaxUses {
		return KeyText{}, refuse(409, CodeKeyExhausted, "%s has been used %d of %d times, so it cannot enroll another connector and is not revealed; raise its maximum uses first (outpost keys edit %s --max-uses N)", k.Name, k.UseCount, k.MaxUses, k.Name)
	}
	s.Log.Info("key revealed", "key", name, "key_id", k.ID)
	return s.keyText(ctx, name)
}

// SetMaxUses changes a key's maximum uses, never below its count.
func (s *Service) SetMaxUses(ctx context.Context, name string, max int64) (KeyInfo, error) {
	k, err := s.key(ctx, name)
	if err != nil {
		return KeyInfo{}, err
	}
	if max < 1 {
		return KeyInfo{}, refuse(400, CodeBadRequest, "maximum uses must be at least 1 (got %d)", max)
	}
	switch err := s.Store.SetMaxUses(ctx, name, max); {
	case errors.Is(err, store.ErrConflict):
		k, _ = s.key(ctx, name)
		return KeyInfo{}, refuse(409, CodeConflict, "%s has already been used %d times; its maximum cannot be set below that (asked %d)", name, k.UseCount, max)
	case errors.Is(err, store.ErrNotFound):
		return KeyInfo{}, notFound("key", name, "list keys with 'outpost keys list'")
	case err != nil:
		return KeyInfo{}, s.internal(err)
	}
	_ = k
	return s.Key(ctx, name)
}

// RegenerateKey gives a key a new secret: the old text stops working at
// once, enrolled connectors are unaffected and naming continues.
func (s *Service) RegenerateKey(ctx context.Context, name string) (KeyText, error) {
	k, err := s.key(ctx, name)
	if err != nil {
		return KeyText{}, err
	}
	if err := s.regenerate(ctx, k); err != nil {
		return KeyText{}, err
	}
	return s.keyText(ctx, name)
}

func (s *Service) regenerate(ctx context.Context, k store.Key) error {
	pk := s.skeleton(k)
	pk, err := pk.WithSecret(nil)
	if err != nil {
		return s.internal(err)
	}
	sealed, err := s.seal(pk.ID, pk.Secret[:])
	if err != nil {
		return s.internal(err)
	}
	h := pk.SecretHash()
	if err := s.Store.Regenerate(ctx, k.Name, hex.EncodeToString(h[:]), sealed); err != nil {
		return s.internal(err)
	}
	s.Log.Info("key regenerated", "key", k.Name, "key_id", k.ID)
	return nil
}

// RevokeKey stops a key from enrolling anything more.
func (s *Service) RevokeKey(ctx context.Context, name string) (KeyInfo, error) {
	if err := s.Store.SetKeyState(ctx, name, store.KeyRevoked); errors.Is(err, store.ErrNotFound) {
		return KeyInfo{}, notFound("key", name, "list keys with 'outpost keys list'")
	} else if err != nil {
		return KeyInfo{}, s.internal(err)
	}
	s.Log.Info("key revoked", "key", name)
	return s.Key(ctx, name)
}

// DeleteKey deletes a key; connectors it enrolled stay.
func (s *Service) DeleteKey(ctx context.Context, name string) error {
	if err := s.Store.DeleteKey(ctx, name); errors.Is(err, store.ErrNotFound) {
		return notFound("key", name, "list keys with 'outpost keys list'")
	} else if err != nil {
		return s.internal(err)
	}
	s.Log.Info("key deleted", "key", name)
	return nil
}

// Connectors lists connectors, optionally of one group.
func (s *Service) Connectors(ctx context.Context, group string) ([]store.Connector, error) {
	cs, err := s.Store.Connectors(ctx, group)
	if err != nil {
		return nil, s.internal(err)
	}
	return cs, nil
}

// Connector returns one connector.
func (s *Service) Connector(ctx context.Context, name string) (store.Connector, error) {
	c, err := s.Store.ConnectorByName(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return c, notFound("connector", name, "list connectors with 'outpost connectors list'")
	} else if err != nil {
		return c, s.internal(err)
	}
	return c, nil
}

// RevokeResult says what revoking a connector did.
type RevokeResult struct {
	Connector   store.Connector `json:"connector"`
	Regenerated []string        `json:"regenerated_keys"`
}

// RevokeConnector revokes a connector and regenerates every key of its
// group, since whoever held the connector may hold those keys too.
func (s *Service) RevokeConnector(ctx context.Context, name string) (RevokeResult, error) {
	c, err := s.Connector(ctx, name)
	if err != nil {
		return RevokeResult{}, err
	}
	if err := s.Store.SetConnectorState(ctx, name, store.ConnectorRevoked, "revoked by the admin"); err != nil {
		return RevokeResult{}, s.internal(err)
	}
	keys, err := s.Store.Keys(ctx, store.KeyFilter{Group: c.Group})
	if err != nil {
		return RevokeResult{}, s.internal(err)
	}
	res := RevokeResult{Regenerated: []string{}}
	for _, k := range keys {
		if err := s.regenerate(ctx, k); err != nil {
			return RevokeResult{}, err
		}
		res.Regenerated = append(res.Regenerated, k.Name)
	}
	s.Log.Info("connector revoked", "connector", name, "regenerated_keys", res.Regenerated)
	res.Connector, err = s.Connector(ctx, name)
	return res, err
}
