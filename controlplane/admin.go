package controlplane

import (
	"context"
	"encoding/hex"
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/outpost-appliance/outpost/controlplane/store"
	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/provkey"
)

func notFound(kind, name, hint string) *cpapi.Error {
	return refuse(cpapi.CodeNotFound, "no %s named %q; %s", kind, name, hint)
}

func validName(kind, name string) *cpapi.Error {
	if name == "" || len(name) > 64 {
		return refuse(cpapi.CodeBadRequest, "%s name must be 1 to 64 characters", kind)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return refuse(cpapi.CodeBadRequest, "%s name %q: %q is not allowed; use letters, digits, '-', '_' and '.'", kind, name, c)
		}
	}
	return nil
}

func applyGroup(g *store.Group, sp cpapi.GroupSpec) *cpapi.Error {
	if sp.Location != nil {
		g.Location = *sp.Location
	}
	if sp.WindowDay != nil {
		d := -1
		for i, n := range cpapi.Days {
			if strings.EqualFold(*sp.WindowDay, n) || len(*sp.WindowDay) > 3 && strings.HasPrefix(strings.ToLower(*sp.WindowDay), n) {
				d = i
			}
		}
		if d < 0 {
			return refuse(cpapi.CodeBadRequest, "upgrade window day %q: use one of %s", *sp.WindowDay, strings.Join(cpapi.Days, ", "))
		}
		g.WindowDay = d
	}
	if sp.WindowHour != nil {
		if *sp.WindowHour < 0 || *sp.WindowHour > 23 {
			return refuse(cpapi.CodeBadRequest, "upgrade window start hour %d: use 0 to 23 (UTC)", *sp.WindowHour)
		}
		g.WindowHour = *sp.WindowHour
	}
	return nil
}

// CreateGroup adds a group; the window defaults to Sunday 02:00–06:00 UTC.
func (s *Service) CreateGroup(ctx context.Context, sp cpapi.GroupSpec) (cpapi.Group, error) {
	if e := validName("group", sp.Name); e != nil {
		return cpapi.Group{}, e
	}
	g := store.Group{Name: sp.Name, WindowDay: 0, WindowHour: 2, CreatedAt: s.Now()}
	if e := applyGroup(&g, sp); e != nil {
		return cpapi.Group{}, e
	}
	if sp.TargetVersion != nil {
		v, err := s.checkTarget(ctx, *sp.TargetVersion)
		if err != nil {
			return cpapi.Group{}, err
		}
		g.TargetVersion = v
	}
	if sp.AllowDowngrade != nil {
		g.AllowDowngrade = *sp.AllowDowngrade
	}
	if e := checkDowngrade(g); e != nil {
		return cpapi.Group{}, e
	}
	if err := s.Store.CreateGroup(ctx, g); errors.Is(err, store.ErrExists) {
		return cpapi.Group{}, refuse(cpapi.CodeExists, "a group named %q already exists; choose another name or edit it with 'outpost groups edit'", sp.Name)
	} else if err != nil {
		return cpapi.Group{}, s.internal(err)
	}
	return s.Group(ctx, sp.Name)
}

// Groups lists groups.
func (s *Service) Groups(ctx context.Context) ([]cpapi.Group, error) {
	gs, err := s.Store.Groups(ctx)
	if err != nil {
		return nil, s.internal(err)
	}
	out := make([]cpapi.Group, len(gs))
	for i, g := range gs {
		out[i] = apiGroup(g)
	}
	return out, nil
}

// Group returns one group with its rollout.
func (s *Service) Group(ctx context.Context, name string) (cpapi.Group, error) {
	g, err := s.group(ctx, name)
	if err != nil {
		return cpapi.Group{}, err
	}
	out := apiGroup(g)
	if out.Rollout, err = s.rollout(ctx, g); err != nil {
		return cpapi.Group{}, err
	}
	return out, nil
}

func (s *Service) group(ctx context.Context, name string) (store.Group, error) {
	g, err := s.Store.Group(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return g, notFound("group", name, "list groups with 'outpost groups list'")
	} else if err != nil {
		return g, s.internal(err)
	}
	return g, nil
}

// EditGroup changes a group's location, window or target version; a new
// target clears a stopped rollout.
func (s *Service) EditGroup(ctx context.Context, sp cpapi.GroupSpec) (cpapi.Group, error) {
	g, err := s.group(ctx, sp.Name)
	if err != nil {
		return cpapi.Group{}, err
	}
	if e := applyGroup(&g, sp); e != nil {
		return cpapi.Group{}, e
	}
	if sp.TargetVersion != nil {
		v, err := s.checkTarget(ctx, *sp.TargetVersion)
		if err != nil {
			return cpapi.Group{}, err
		}
		if v != g.TargetVersion {
			s.Log.Info("group target changed", "group", g.Name, "from", targetText(g.TargetVersion), "to", targetText(v))
		}
		g.TargetVersion = v
	}
	if sp.AllowDowngrade != nil {
		g.AllowDowngrade = *sp.AllowDowngrade
	}
	if e := checkDowngrade(g); e != nil {
		return cpapi.Group{}, e
	}
	if err := s.Store.UpdateGroup(ctx, g); err != nil {
		return cpapi.Group{}, s.internal(err)
	}
	return s.Group(ctx, sp.Name)
}

// DeleteGroup deletes a group; one with keys or connectors needs force.
func (s *Service) DeleteGroup(ctx context.Context, name string, force bool) error {
	g, err := s.group(ctx, name)
	if err != nil {
		return err
	}
	if !force && (g.Keys > 0 || g.Connectors > 0) {
		return refuse(cpapi.CodeConflict, "group %s still has %d keys and %d connectors; delete or move them first, or delete with --force (its keys are deleted and its connectors revoked)", name, g.Keys, g.Connectors)
	}
	if err := s.Store.DeleteGroup(ctx, name, force, s.Now()); errors.Is(err, store.ErrNotFound) {
		return notFound("group", name, "list groups with 'outpost groups list'")
	} else if err != nil {
		return s.internal(err)
	}
	s.Log.Info("group deleted", "group", name, "force", force)
	return nil
}

func (s *Service) info(k store.Key) cpapi.KeyInfo {
	return cpapi.KeyInfo{Key: apiKey(k), Redacted: s.skeleton(k).Redacted(), Expired: !k.ExpiresAt.IsZero() && !s.Now().Before(k.ExpiresAt)}
}

// CreateKey makes a provisioning key.
func (s *Service) CreateKey(ctx context.Context, sp cpapi.KeySpec) (cpapi.KeyText, error) {
	if e := validName("key", sp.Name); e != nil {
		return cpapi.KeyText{}, e
	}
	if sp.MaxUses < 1 {
		return cpapi.KeyText{}, refuse(cpapi.CodeBadRequest, "maximum uses must be at least 1 (got %d)", sp.MaxUses)
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
		return cpapi.KeyText{}, refuse(cpapi.CodeBadRequest, "no signing CA named %q; this server has %s", sp.SigningCA, strings.Join(names, ", "))
	}
	d, never, err := cpapi.ParseExpiresIn(sp.ExpiresIn)
	if err != nil {
		return cpapi.KeyText{}, refuse(cpapi.CodeBadRequest, "%v", err)
	}
	pin := provkey.PinOf(s.Authority.Root.Cert)
	pk, err := provkey.Generate(s.KeyHost, pin, nil)
	if err != nil {
		return cpapi.KeyText{}, s.internal(err)
	}
	sealed, err := s.seal(pk.ID, pk.Secret[:])
	if err != nil {
		return cpapi.KeyText{}, s.internal(err)
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
		return cpapi.KeyText{}, refuse(cpapi.CodeExists, "a key named %q already exists; choose another name, or 'outpost keys regenerate %s' for a new secret", sp.Name, sp.Name)
	case errors.Is(err, store.ErrNotFound):
		return cpapi.KeyText{}, notFound("group", sp.Group, "create it with 'outpost groups create "+sp.Group+"'")
	case err != nil:
		return cpapi.KeyText{}, s.internal(err)
	}
	s.Log.Info("key created", "key", sp.Name, "key_id", k.ID, "group", sp.Group, "max_uses", sp.MaxUses)
	return s.keyText(ctx, sp.Name)
}

func (s *Service) keyText(ctx context.Context, name string) (cpapi.KeyText, error) {
	k, err := s.key(ctx, name)
	if err != nil {
		return cpapi.KeyText{}, err
	}
	pk, err := s.unseal(k)
	if err != nil {
		return cpapi.KeyText{}, s.internal(err)
	}
	return cpapi.KeyText{KeyInfo: s.info(k), Text: pk.Reveal()}, nil
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
func (s *Service) Keys(ctx context.Context, f cpapi.KeyFilter) ([]cpapi.KeyInfo, error) {
	ks, err := s.Store.Keys(ctx, store.KeyFilter{Group: f.Group, Name: f.Name, State: f.State})
	if err != nil {
		return nil, s.internal(err)
	}
	out := make([]cpapi.KeyInfo, len(ks))
	for i, k := range ks {
		out[i] = s.info(k)
	}
	return out, nil
}

// Key returns one key, redacted.
func (s *Service) Key(ctx context.Context, name string) (cpapi.KeyInfo, error) {
	k, err := s.key(ctx, name)
	if err != nil {
		return cpapi.KeyInfo{}, err
	}
	return s.info(k), nil
}

// RevealKey returns a key's text, unless it cannot enroll anything more.
func (s *Service) RevealKey(ctx context.Context, name string) (cpapi.KeyText, error) {
	k, err := s.key(ctx, name)
	if err != nil {
		return cpapi.KeyText{}, err
	}
	if k.UseCount >= k.MaxUses {
		return cpapi.KeyText{}, refuse(cpapi.CodeKeyExhausted, "%s has been used %d of %d times, so it cannot enroll another connector and is not revealed; raise its maximum uses first (outpost keys edit %s --max-uses N)", k.Name, k.UseCount, k.MaxUses, k.Name)
	}
	s.Log.Info("key revealed", "key", name, "key_id", k.ID)
	return s.keyText(ctx, name)
}

// SetMaxUses changes a key's maximum uses, never below its count.
func (s *Service) SetMaxUses(ctx context.Context, name string, max int64) (cpapi.KeyInfo, error) {
	k, err := s.key(ctx, name)
	if err != nil {
		return cpapi.KeyInfo{}, err
	}
	if max < 1 {
		return cpapi.KeyInfo{}, refuse(cpapi.CodeBadRequest, "maximum uses must be at least 1 (got %d)", max)
	}
	switch err := s.Store.SetMaxUses(ctx, name, max); {
	case errors.Is(err, store.ErrConflict):
		k, _ = s.key(ctx, name)
		return cpapi.KeyInfo{}, refuse(cpapi.CodeConflict, "%s has already been used %d times; its maximum cannot be set below that (asked %d)", name, k.UseCount, max)
	case errors.Is(err, store.ErrNotFound):
		return cpapi.KeyInfo{}, notFound("key", name, "list keys with 'outpost keys list'")
	case err != nil:
		return cpapi.KeyInfo{}, s.internal(err)
	}
	_ = k
	return s.Key(ctx, name)
}

// RegenerateKey gives a key a new secret: the old text stops working at
// once, enrolled connectors are unaffected and naming continues.
func (s *Service) RegenerateKey(ctx context.Context, name string) (cpapi.KeyText, error) {
	k, err := s.key(ctx, name)
	if err != nil {
		return cpapi.KeyText{}, err
	}
	if err := s.regenerate(ctx, k); err != nil {
		return cpapi.KeyText{}, err
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
func (s *Service) RevokeKey(ctx context.Context, name string) (cpapi.KeyInfo, error) {
	if err := s.Store.SetKeyState(ctx, name, store.KeyRevoked); errors.Is(err, store.ErrNotFound) {
		return cpapi.KeyInfo{}, notFound("key", name, "list keys with 'outpost keys list'")
	} else if err != nil {
		return cpapi.KeyInfo{}, s.internal(err)
	}
	s.Log.Info("key revoked", "key", name)
	return s.Key(ctx, name)
}

// DeleteKey deletes a key; connectors it enrolled stay. A key that
// enrolled connectors (not revoked) is deleted only with force.
func (s *Service) DeleteKey(ctx context.Context, name string, force bool) error {
	k, err := s.key(ctx, name)
	if err != nil {
		return err
	}
	if !force {
		n, err := s.Store.CountEnrolled(ctx, k.ID)
		if err != nil {
			return s.internal(err)
		}
		if n > 0 {
			return refuse(cpapi.CodeConflict, "key %s enrolled %d connectors that are not revoked (they stay enrolled and keep working, but lose their key); delete it anyway with 'outpost keys delete %s --force', or revoke it instead", name, n, name)
		}
	}
	if err := s.Store.DeleteKey(ctx, name); errors.Is(err, store.ErrNotFound) {
		return notFound("key", name, "list keys with 'outpost keys list'")
	} else if err != nil {
		return s.internal(err)
	}
	s.Log.Info("key deleted", "key", name, "force", force)
	return nil
}

// Connectors lists connectors, optionally of one group.
func (s *Service) Connectors(ctx context.Context, group string) ([]cpapi.Connector, error) {
	cs, err := s.Store.Connectors(ctx, group)
	if err != nil {
		return nil, s.internal(err)
	}
	out := make([]cpapi.Connector, len(cs))
	now := s.Now()
	for i, c := range cs {
		out[i] = s.apiConnector(c, now)
	}
	return out, nil
}

// Connector returns one connector.
func (s *Service) Connector(ctx context.Context, name string) (cpapi.Connector, error) {
	c, err := s.connector(ctx, name)
	if err != nil {
		return cpapi.Connector{}, err
	}
	return s.apiConnector(c, s.Now()), nil
}

func (s *Service) connector(ctx context.Context, name string) (store.Connector, error) {
	c, err := s.Store.ConnectorByName(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return c, notFound("connector", name, "list connectors with 'outpost connectors list'")
	} else if err != nil {
		return c, s.internal(err)
	}
	return c, nil
}

// RevokeConnector revokes a connector and regenerates every key of its
// group, since whoever held the connector may hold those keys too.
func (s *Service) RevokeConnector(ctx context.Context, name string) (cpapi.RevokeResult, error) {
	c, err := s.connector(ctx, name)
	if err != nil {
		return cpapi.RevokeResult{}, err
	}
	if err := s.Store.SetConnectorState(ctx, name, store.ConnectorRevoked, "revoked by the admin"); err != nil {
		return cpapi.RevokeResult{}, s.internal(err)
	}
	keys, err := s.Store.Keys(ctx, store.KeyFilter{Group: c.Group})
	if err != nil {
		return cpapi.RevokeResult{}, s.internal(err)
	}
	res := cpapi.RevokeResult{Regenerated: []string{}}
	for _, k := range keys {
		if err := s.regenerate(ctx, k); err != nil {
			return cpapi.RevokeResult{}, err
		}
		res.Regenerated = append(res.Regenerated, k.Name)
	}
	s.Log.Info("connector revoked", "connector", name, "regenerated_keys", res.Regenerated)
	res.Connector, err = s.Connector(ctx, name)
	return res, err
}

// The store's rows are the database's business; these copy what the API
// shows (never a key's secret hash or sealed secret). States are stored
// with the API's names.

func apiGroup(g store.Group) cpapi.Group {
	return cpapi.Group{Name: g.Name, Location: g.Location, WindowDay: g.WindowDay, WindowHour: g.WindowHour, CreatedAt: g.CreatedAt, Keys: g.Keys, Connectors: g.Connectors,
		TargetVersion: g.TargetVersion, AllowDowngrade: g.AllowDowngrade}
}

// checkDowngrade refuses --allow-downgrade without a pinned version: the
// newest release is never older than what connectors run.
func checkDowngrade(g store.Group) *cpapi.Error {
	if g.AllowDowngrade && g.TargetVersion == "" {
		return refuse(cpapi.CodeBadRequest, "allow_downgrade needs a pinned version: with latest there is nothing older to go to; pin one with --version V --allow-downgrade")
	}
	return nil
}

func targetText(v string) string {
	if v == "" {
		return cpapi.TargetLatest
	}
	return v
}

func apiKey(k store.Key) cpapi.Key {
	return cpapi.Key{ID: k.ID, Name: k.Name, Group: k.Group, SigningCA: k.SigningCA, Host: k.Host, Pin: k.Pin, MaxUses: k.MaxUses, UseCount: k.UseCount,
		ExpiresAt: k.ExpiresAt, State: k.State, Generation: k.Generation, CreatedAt: k.CreatedAt}
}

// apiConnector shows a connector as it is at now, with its health.
func (s *Service) apiConnector(c store.Connector, now time.Time) cpapi.Connector {
	addrs := c.Addresses
	if addrs == nil {
		addrs = []string{}
	}
	return cpapi.Connector{Name: c.Name, KeyID: c.KeyID, KeyName: c.KeyName, Group: c.Group, SigningCA: c.SigningCA, Fingerprint: c.Fingerprint,
		PubKeyHash: c.PubKeyHash, Nonce: c.Nonce, Serial: c.Serial, CertPEM: c.CertPEM, CertExpires: c.CertExpires, EnrolledAt: c.EnrolledAt,
		LastSeen: c.LastSeen, Version: c.Version, Uptime: c.Uptime, State: c.State, StateReason: c.StateReason,
		Health: s.health(c, now), Addresses: addrs, Skew: c.Skew,
		UpgradeTarget: c.Upgrade.Target, UpgradeState: c.Upgrade.State, UpgradeReason: c.Upgrade.Reason}
}
