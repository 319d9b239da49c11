package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Failed enrollments are counted per (source address, key id) in fixed
// windows, in the database, so that every server sharing it enforces one
// limit.

// CountFailure counts one failed enrollment from source with keyID ("" for
// a key too malformed to name one) and returns the count in the current
// window; a window older than window starts over.
func (s *Store) CountFailure(ctx context.Context, source, keyID string, now time.Time, window time.Duration) (int64, error) {
	n, stale := ms(now), ms(now.Add(-window))
	var count int64
	err := s.db.QueryRowContext(ctx, s.q(`INSERT INTO enroll_failures (source, key_id, window_start, count) VALUES (?, ?, ?, 1)
		ON CONFLICT (source, key_id) DO UPDATE SET
			count = CASE WHEN enroll_failures.window_start <= ? THEN 1 ELSE enroll_failures.count + 1 END,
			window_start = CASE WHEN enroll_failures.window_start <= ? THEN ? ELSE enroll_failures.window_start END
		RETURNING count`), source, keyID, n, stale, stale, n).Scan(&count)
	if err != nil {
		return 0, fmt.Errorf("count failed enrollment: %w", err)
	}
	return count, nil
}

// Failures returns the failed enrollments from source with keyID in the
// current window.
func (s *Store) Failures(ctx context.Context, source, keyID string, now time.Time, window time.Duration) (int64, error) {
	var count int64
	err := s.db.QueryRowContext(ctx, s.q("SELECT count FROM enroll_failures WHERE source = ? AND key_id = ? AND window_start > ?"),
		source, keyID, ms(now.Add(-window))).Scan(&count)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read failed enrollments: %w", err)
	}
	return count, nil
}

// PruneFailures deletes counts whose window has passed.
func (s *Store) PruneFailures(ctx context.Context, now time.Time, window time.Duration) error {
	_, err := s.db.ExecContext(ctx, s.q("DELETE FROM enroll_failures WHERE window_start <= ?"), ms(now.Add(-window)))
	return err
}
