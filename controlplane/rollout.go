package controlplane

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/outpost-appliance/outpost/controlplane/store"
	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/release"
)

// DefaultUpgradeTimeout is how long a connector ordered to upgrade has to
// come back healthy on the new version before its group's rollout stops.
const DefaultUpgradeTimeout = 15 * time.Minute

// decision is what the scheduler does for one group at one moment, and
// how the group's rollout looks then. decide makes it from what the store
// holds, without side effects; step applies it.
type decision struct {
	view cpapi.Rollout
	// clear: the rollout stopped on another version than today's target
	// (a new target, or a newer release for a group following the newest).
	clear bool
	// finish frees the group's slot from this connector: its upgrade is
	// done, or it left the group.
	finish string
	// stop stops the rollout: the upgrading connector failed.
	stop *rolloutStop
	// order is the connector to order to upgrade to view.Target.
	order string
	// endNow ends an admin's "now": nothing is left to upgrade.
	endNow bool
}

type rolloutStop struct{ connector, version, reason string }

// target is the version a group's connectors are brought to: its pinned
// version, else the newest published ("" when none is).
func target(g store.Group, newest string) string {
	if g.TargetVersion != "" {
		return g.TargetVersion
	}
	return newest
}

// decide applies the rollout rules to group g, whose connectors are cs, at
// now, when newest is the newest published version:
//
//   - connectors (not revoked) older than the target are upgraded, one at a
//     time; newer ones are left alone;
//   - a connector is ordered only inside the group's window or after an
//     admin's "now", only while every connector of the group is healthy,
//     and never while the rollout is stopped;
//   - an upgrade is done when the connector heartbeats healthy on the
//     version it was ordered to; it fails when the connector reports a
//     failure for that version, or is not back healthy on it within the
//     upgrade timeout: the rollout then stops, naming the connector, the
//     version and why.
func (s *Service) decide(g store.Group, newest string, cs []store.Connector, now time.Time) decision {
	var d decision
	tgt := target(g, newest)
	day := time.Weekday(g.WindowDay)
	open := InWindow(day, g.WindowHour, now)
	d.view = cpapi.Rollout{Target: tgt, Now: g.Rollout.Now, WindowOpen: open, Connectors: []cpapi.RolloutConnector{}}
	next := ""
	if !open {
		d.view.NextWindow, _ = NextWindow(day, g.WindowHour, now)
		next = fmt.Sprintf("next %s %02d:00 UTC", cpapi.Days[d.view.NextWindow.Weekday()], d.view.NextWindow.Hour())
	}
	stopped, failed := g.Rollout.Stopped, g.Rollout.Failed
	if stopped != "" && g.Rollout.Version != tgt {
		d.clear, stopped, failed = true, "", ""
	}

	var members []store.Connector
	healthOf := map[string]string{}
	for _, c := range cs {
		if c.State == store.ConnectorRevoked {
			continue
		}
		members = append(members, c)
		healthOf[c.Name] = s.health(c, now)
	}

	// The connector holding the group's slot: done, failed, or upgrading.
	active := ""
	if slot := g.Rollout.Connector; slot != "" {
		var c *store.Connector
		for i := range members {
			if members[i].Name == slot {
				c = &members[i]
			}
		}
		u := store.Upgrade{}
		if c != nil {
			u = c.Upgrade
		}
		switch {
		case c == nil || u.Target == "":
			d.finish = slot
		case healthOf[c.Name] == cpapi.HealthHealthy && c.Version == u.Target:
			d.finish = slot
		case u.State == cpapi.UpgradeFailed && u.Version == u.Target && !u.ReportedAt.Before(u.OrderedAt):
			why := u.Reason
			if why == "" {
				why = "it gave no reason"
			}
			d.stop = &rolloutStop{c.Name, u.Target, fmt.Sprintf("%s failed to upgrade to %s: %s", c.Name, u.Target, why)}
		case now.Sub(u.OrderedAt) >= s.upgradeTimeout():
			d.stop = &rolloutStop{c.Name, u.Target, fmt.Sprintf("%s did not come back healthy on %s within %s; last seen %s, running %s (%s)",
				c.Name, u.Target, s.upgradeTimeout(), seenText(c.LastSeen), orNone(c.Version), healthOf[c.Name])}
		default:
			active = slot
		}
		if d.stop != nil {
			stopped, failed = d.stop.reason, d.stop.connector
		}
	}

	// Who is behind, and why they wait.
	var pending []store.Connector
	for _, c := range members {
		if c.Name != active && c.Name != failed && tgt != "" && (c.Version == "" || release.CompareVersions(c.Version, tgt) < 0 ||
			g.AllowDowngrade && g.TargetVersion != "" && release.CompareVersions(c.Version, tgt) > 0) {
			pending = append(pending, c)
		}
	}
	var unhealthy []string // members that are not healthy, in order
	for _, c := range members {
		if healthOf[c.Name] != cpapi.HealthHealthy {
			unhealthy = append(unhealthy, c.Name)
		}
	}
	why := "" // why no connector can be ordered now; "" when one can
	byHealth := false
	switch {
	case stopped != "":
		why = fmt.Sprintf("the rollout stopped (%s failed); run 'outpost upgrade --group %s --now' or change the group's version", failed, g.Name)
	case active != "":
		why = active + " is upgrading"
	case !open && !g.Rollout.Now:
		why = "outside the window (" + next + ")"
	case len(unhealthy) > 0:
		why, byHealth = unhealthy[0]+" is "+healthOf[unhealthy[0]], true
	}
	if why == "" && len(pending) > 0 {
		d.order = pending[0].Name
	}
	if len(pending) == 0 && active == "" && stopped == "" && g.Rollout.Now {
		d.endNow = true
	}

	for _, c := range members {
		rc := cpapi.RolloutConnector{Name: c.Name, Version: c.Version, Health: healthOf[c.Name]}
		switch {
		case c.Name == active:
			rc.Status, rc.Since = cpapi.RolloutActive, c.Upgrade.OrderedAt
			rc.Detail = "ordered to install " + c.Upgrade.Target
			if c.Upgrade.State == cpapi.UpgradeInstalling && c.Upgrade.Version == c.Upgrade.Target {
				rc.Detail = "installing " + c.Upgrade.Target
			}
		case c.Name == failed && stopped != "":
			rc.Status, rc.Detail = cpapi.RolloutFailed, stopped
		case tgt == "":
			rc.Status, rc.Detail = cpapi.RolloutDone, "no release is published"
		case c.Version != "" && release.CompareVersions(c.Version, tgt) == 0:
			rc.Status = cpapi.RolloutDone
		case c.Version != "" && release.CompareVersions(c.Version, tgt) > 0 && !(g.AllowDowngrade && g.TargetVersion != ""):
			rc.Status, rc.Detail = cpapi.RolloutNewer, "newer than the target "+tgt+"; left alone (pin it with --allow-downgrade to go back)"
		default:
			rc.Status = cpapi.RolloutPending
			switch {
			case c.Name == d.order:
				rc.Detail = "waiting: next"
			case why == "":
				rc.Detail = "waiting: after " + d.order
			case byHealth && healthOf[c.Name] != cpapi.HealthHealthy:
				rc.Detail = "waiting: it is " + healthOf[c.Name]
			default:
				rc.Detail = "waiting: " + why
			}
		}
		d.view.Connectors = append(d.view.Connectors, rc)
	}

	switch {
	case stopped != "":
		d.view.State, d.view.Reason = cpapi.RolloutStopped, stopped
	case active != "":
		d.view.State, d.view.Reason = cpapi.RolloutUpgrading, active+" is upgrading to "+tgt
	case len(pending) == 0:
		d.view.State = cpapi.RolloutIdle
		if tgt == "" {
			d.view.Reason = "no release is published"
		}
	case d.order != "":
		d.view.State, d.view.Reason = cpapi.RolloutWaiting, "next: "+d.order
	default:
		d.view.State, d.view.Reason = cpapi.RolloutWaiting, why
	}
	if d.endNow || d.stop != nil { // both end an admin's "now"
		d.view.Now = false
	}
	return d
}

func (s *Service) upgradeTimeout() time.Duration {
	if s.UpgradeTimeout > 0 {
		return s.UpgradeTimeout
	}
	return DefaultUpgradeTimeout
}

func seenText(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func orNone(v string) string {
	if v == "" {
		return "no version reported"
	}
	return v
}

// Rollouts runs one step of every group's rollout (see decide); the
// server calls it every heartbeat interval. Steps are safe to run on
// several servers sharing a database at once: the store's conditional
// updates let one order per group through.
func (s *Service) Rollouts(ctx context.Context) error {
	gs, err := s.Store.Groups(ctx)
	if err != nil {
		return err
	}
	newest, err := s.newest(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, g := range gs {
		if err := s.step(ctx, g, newest); err != nil {
			errs = append(errs, fmt.Errorf("group %s: %w", g.Name, err))
		}
	}
	return errors.Join(errs...)
}

// newest is the newest published version, "" when none is.
func (s *Service) newest(ctx context.Context) (string, error) {
	rs, err := s.Store.Releases(ctx)
	if err != nil {
		return "", err
	}
	v := ""
	for _, r := range rs {
		if v == "" || release.CompareVersions(r.Version, v) > 0 {
			v = r.Version
		}
	}
	return v, nil
}

// step decides and applies one step of group g's rollout.
func (s *Service) step(ctx context.Context, g store.Group, newest string) error {
	cs, err := s.Store.Connectors(ctx, g.Name)
	if err != nil {
		return err
	}
	now := s.Now()
	d := s.decide(g, newest, cs, now)
	if d.clear {
		if err := s.Store.ResumeRollout(ctx, g.Name, false); err != nil {
			return err
		}
		s.Log.Info("rollout resumed: the group's target changed since it stopped", "group", g.Name, "target", d.view.Target, "stopped_on", g.Rollout.Version)
	}
	if d.finish != "" {
		if err := s.Store.FinishUpgrade(ctx, g.Name, d.finish); err != nil {
			return err
		}
		s.Log.Info("connector upgrade finished", "group", g.Name, "connector", d.finish)
	}
	if d.stop != nil {
		switch err := s.Store.StopRollout(ctx, g.Name, d.stop.connector, d.stop.version, d.stop.reason); {
		case errors.Is(err, store.ErrConflict): // another server decided first
		case err != nil:
			return err
		default:
			s.Log.Warn("rollout stopped", "group", g.Name, "connector", d.stop.connector, "version", d.stop.version, "reason", d.stop.reason)
		}
	}
	if d.endNow {
		if err := s.Store.EndNow(ctx, g.Name); err != nil {
			return err
		}
	}
	if d.order != "" {
		switch err := s.Store.OrderUpgrade(ctx, g.Name, d.order, d.view.Target, now); {
		case errors.Is(err, store.ErrConflict): // another server ordered one first
		case err != nil:
			return err
		default:
			s.Log.Info("connector ordered to upgrade", "group", g.Name, "connector", d.order, "version", d.view.Target)
		}
	}
	return nil
}

// rollout shows group g's rollout as it stands.
func (s *Service) rollout(ctx context.Context, g store.Group) (*cpapi.Rollout, error) {
	newest, err := s.newest(ctx)
	if err != nil {
		return nil, s.internal(err)
	}
	cs, err := s.Store.Connectors(ctx, g.Name)
	if err != nil {
		return nil, s.internal(err)
	}
	d := s.decide(g, newest, cs, s.Now())
	return &d.view, nil
}

// UpgradeNow starts group name's rollout now, outside its window, and
// clears a stop; the flag ends when no connector is left to upgrade. The
// first order is given at once (when the group is healthy).
func (s *Service) UpgradeNow(ctx context.Context, name string) (cpapi.Group, error) {
	if _, err := s.group(ctx, name); err != nil {
		return cpapi.Group{}, err
	}
	if err := s.Store.ResumeRollout(ctx, name, true); errors.Is(err, store.ErrNotFound) {
		return cpapi.Group{}, notFound("group", name, "list groups with 'outpost groups list'")
	} else if err != nil {
		return cpapi.Group{}, s.internal(err)
	}
	s.Log.Info("rollout started now by the admin", "group", name)
	g, err := s.group(ctx, name)
	if err != nil {
		return cpapi.Group{}, err
	}
	newest, err := s.newest(ctx)
	if err != nil {
		return cpapi.Group{}, s.internal(err)
	}
	if err := s.step(ctx, g, newest); err != nil {
		return cpapi.Group{}, s.internal(err)
	}
	return s.Group(ctx, name)
}

// upgradeOrder is what a heartbeat answers a connector holding upgrade
// order u while running version: the release to install, or nil (no
// order, already there, or it reported that this order failed).
func (s *Service) upgradeOrder(ctx context.Context, name string, u store.Upgrade, version string) *cpapi.UpgradeOrder {
	if u.Target == "" || version == u.Target {
		return nil
	}
	if u.State == cpapi.UpgradeFailed && u.Version == u.Target && !u.ReportedAt.Before(u.OrderedAt) {
		return nil
	}
	r, err := s.Store.ReleaseByVersion(ctx, u.Target)
	if err != nil {
		s.Log.Error("upgrade order without its release", "connector", name, "version", u.Target, "err", err)
		return nil
	}
	// An order to an older version exists only for a group pinned to it
	// with allow_downgrade.
	return &cpapi.UpgradeOrder{Version: r.Version, Bundle: cpapi.Path(cpapi.PathReleaseBundle, r.Version), Size: r.Size,
		AllowDowngrade: version != "" && release.CompareVersions(r.Version, version) < 0}
}
