package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Release is a published update bundle. The bundle file itself lives in
// the server's data directory; the row says what it is.
type Release struct {
	Version      string // unique: a version is published once
	Name         string
	Architecture string
	Size         int64  // the bundle file's bytes
	SHA256       string // of the bundle file, hex
	ImageSize    int64
	PublishedAt  time.Time
}

const releaseCols = "version, name, architecture, size, sha256, image_size, published_at"

func scanRelease(sc interface{ Scan(...any) error }) (Release, error) {
	var r Release
	var at int64
	err := sc.Scan(&r.Version, &r.Name, &r.Architecture, &r.Size, &r.SHA256, &r.ImageSize, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return r, ErrNotFound
	}
	r.PublishedAt = fromMS(at)
	return r, err
}

// AddRelease records a release; ErrExists when its version is taken (by
// this or another bundle: the caller compares).
func (s *Store) AddRelease(ctx context.Context, r Release) error {
	res, err := s.db.ExecContext(ctx, s.q("INSERT INTO releases ("+releaseCols+") VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (version) DO NOTHING"),
		r.Version, r.Name, r.Architecture, r.Size, r.SHA256, r.ImageSize, ms(r.PublishedAt))
	if err != nil {
		return fmt.Errorf("record release %s: %w", r.Version, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrExists
	}
	return nil
}

// DeleteRelease forgets a release (a publish whose file could not be put
// in place).
func (s *Store) DeleteRelease(ctx context.Context, version string) error {
	_, err := s.db.ExecContext(ctx, s.q("DELETE FROM releases WHERE version = ?"), version)
	return err
}

// ReleaseByVersion returns a release or ErrNotFound.
func (s *Store) ReleaseByVersion(ctx context.Context, version string) (Release, error) {
	return scanRelease(s.db.QueryRowContext(ctx, s.q("SELECT "+releaseCols+" FROM releases WHERE version = ?"), version))
}

// Releases lists every release, in no particular order (versions order
// by release.CompareVersions, which SQL does not know).
func (s *Store) Releases(ctx context.Context) ([]Release, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+releaseCols+" FROM releases")
	if err != nil {
		return nil, fmt.Errorf("list releases: %w", err)
	}
	defer rows.Close()
	out := []Release{}
	for rows.Next() {
		r, err := scanRelease(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// OrderUpgrade orders connector (of group, active) to install version. It
// first claims the group's one rollout slot with a conditional update of
// the group's row, in the same transaction: two servers sharing a
// database cannot both order a connector of one group. ErrConflict: the
// slot is taken, the rollout stopped, or the connector is no longer an
// active member of the group.
func (s *Store) OrderUpgrade(ctx context.Context, group, connector, version string, at time.Time) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, s.q("UPDATE groups SET rollout_connector = ? WHERE name = ? AND rollout_connector = '' AND rollout_stopped = ''"), connector, group)
	if err != nil {
		return fmt.Errorf("claim the rollout of group %s: %w", group, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrConflict
	}
	res, err = tx.ExecContext(ctx, s.q(`UPDATE connectors SET upgrade_target = ?, upgrade_ordered_at = ?,
		upgrade_state = '', upgrade_reason = '', upgrade_version = '', upgrade_reported_at = 0
		WHERE name = ? AND group_name = ? AND state = 'active'`), version, ms(at), connector, group)
	if err != nil {
		return fmt.Errorf("order connector %s to upgrade: %w", connector, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrConflict
	}
	err = tx.Commit()
	s.idents.invalidate()
	return err
}

// FinishUpgrade ends connector's upgrade (done, or the connector left the
// group) and frees its group's rollout slot.
func (s *Store) FinishUpgrade(ctx context.Context, group, connector string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, s.q("UPDATE groups SET rollout_connector = '' WHERE name = ? AND rollout_connector = ?"), group, connector); err != nil {
		return fmt.Errorf("free the rollout of group %s: %w", group, err)
	}
	if _, err := tx.ExecContext(ctx, s.q("UPDATE connectors SET upgrade_target = '', upgrade_ordered_at = 0 WHERE name = ?"), connector); err != nil {
		return fmt.Errorf("end the upgrade of %s: %w", connector, err)
	}
	err = tx.Commit()
	s.idents.invalidate()
	return err
}

// StopRollout stops group's rollout because connector failed on version:
// its order is withdrawn and no other connector is ordered until
// ResumeRollout or a new target. Only the connector holding the slot
// stops it (ErrConflict otherwise: another server decided first).
func (s *Store) StopRollout(ctx context.Context, group, connector, version, reason string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, s.q(`UPDATE groups SET rollout_connector = '', rollout_now = 0, rollout_stopped = ?, rollout_failed = ?, rollout_version = ?
		WHERE name = ? AND rollout_connector = ?`), reason, connector, version, group, connector)
	if err != nil {
		return fmt.Errorf("stop the rollout of group %s: %w", group, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrConflict
	}
	if _, err := tx.ExecContext(ctx, s.q("UPDATE connectors SET upgrade_target = '', upgrade_ordered_at = 0 WHERE name = ?"), connector); err != nil {
		return fmt.Errorf("withdraw the upgrade order of %s: %w", connector, err)
	}
	err = tx.Commit()
	s.idents.invalidate()
	return err
}

// ResumeRollout clears a stop; with now, the rollout also runs outside
// the window until no connector is left to upgrade.
func (s *Store) ResumeRollout(ctx context.Context, group string, now bool) error {
	q := "UPDATE groups SET rollout_stopped = '', rollout_failed = '', rollout_version = '' WHERE name = ?"
	if now {
		q = "UPDATE groups SET rollout_stopped = '', rollout_failed = '', rollout_version = '', rollout_now = 1 WHERE name = ?"
	}
	res, err := s.db.ExecContext(ctx, s.q(q), group)
	if err != nil {
		return fmt.Errorf("resume the rollout of group %s: %w", group, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// EndNow clears a group's "now" flag: its rollout is finished.
func (s *Store) EndNow(ctx context.Context, group string) error {
	_, err := s.db.ExecContext(ctx, s.q("UPDATE groups SET rollout_now = 0 WHERE name = ? AND rollout_now <> 0"), group)
	if err != nil {
		return fmt.Errorf("end the rollout of group %s: %w", group, err)
	}
	return nil
}

// ReportUpgrade records what a connector reported about an upgrade,
// directly (not in the heartbeat batch): the scheduler of any server acts
// on it.
func (s *Store) ReportUpgrade(ctx context.Context, connector, state, reason, version string, at time.Time) error {
	_, err := s.db.ExecContext(ctx, s.q("UPDATE connectors SET upgrade_state = ?, upgrade_reason = ?, upgrade_version = ?, upgrade_reported_at = ? WHERE name = ?"),
		state, reason, version, ms(at), connector)
	s.idents.invalidate()
	if err != nil {
		return fmt.Errorf("record the upgrade report of %s: %w", connector, err)
	}
	return nil
}
