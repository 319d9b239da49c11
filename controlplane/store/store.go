// Package store keeps the control plane's state — connector groups,
// provisioning keys and connectors — in SQL through database/sql. It speaks
// to an embedded SQLite file (modernc.org/sqlite, no cgo) or to PostgreSQL
// (pgx) with the same schema and the same queries.
//
// The store never sees a provisioning key's secret in clear: it keeps the
// SHA-256 of the secret (to check it) and the secret sealed by the caller (to
// reveal it to an admin). It makes the one guarantee enrollment relies on:
// a use is counted in the same transaction that records the certificate, and
// never beyond the key's maximum, across any number of server processes.
//
// Its rows are the database's shapes, not the API's: the service converts
// them into the cpapi types that go on the wire.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // PostgreSQL driver "pgx"
	_ "modernc.org/sqlite"             // SQLite driver "sqlite"
)

// Errors callers branch on.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrNoUse    = errors.New("key has no use left") // the conditional count did not apply
	ErrConflict = errors.New("concurrent change")
)

// Store is the control plane database.
type Store struct {
	db       *sql.DB
	postgres bool
	stmts    sync.Map // query → *sql.Stmt, for the enrollment hot path

	enrollCh   chan *enrollReq
	quit       chan struct{}
	writerDone chan struct{}
	flushDone  chan struct{}
	closeOnce  sync.Once

	beats  beats  // heartbeats not yet written
	idents idents // who holds which certificate, for heartbeats
}

// prepared returns a prepared statement for query (already rebound).
func (s *Store) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := s.stmts.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if prev, loaded := s.stmts.LoadOrStore(query, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// CheckDatabase checks a --database value: a postgres:// or postgresql://
// URL, or a SQLite file given as sqlite:PATH or as a PATH ending in .db.
// Anything else (a typo, "not a url") is refused rather than taken for a
// file name.
func CheckDatabase(db string) error {
	switch {
	case strings.HasPrefix(db, "postgres://"), strings.HasPrefix(db, "postgresql://"):
		if _, err := url.Parse(db); err != nil {
			return fmt.Errorf("database URL %s: %v", redactDSN(db), errors.Unwrap(err))
		}
		return nil
	case strings.HasPrefix(db, "sqlite:"):
		if strings.TrimPrefix(db, "sqlite:") == "" {
			return errors.New("database sqlite: names no file; use sqlite:PATH")
		}
		return nil
	case strings.HasSuffix(db, ".db") && !strings.Contains(db, "://"):
		return nil
	}
	return fmt.Errorf("database %q is neither a postgres:// or postgresql:// URL nor a SQLite file (sqlite:PATH, or a PATH ending in .db)", redactDSN(db))
}

// Open opens the database: a postgres:// or postgresql:// URL, otherwise a
// SQLite file, sqlite:PATH or PATH (created if missing). It creates the
// schema.
func Open(ctx context.Context, dsn string) (*Store, error) {
	s := &Store{}
	var err error
	dsn = strings.TrimPrefix(dsn, "sqlite:")
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		s.postgres = true
		s.db, err = sql.Open("pgx", dsn)
		if err != nil {
			return nil, fmt.Errorf("open PostgreSQL database: %w", err)
		}
		s.db.SetMaxOpenConns(32)
		s.db.SetMaxIdleConns(32)
	} else {
		// WAL lets readers run beside the writer; synchronous=NORMAL in WAL
		// mode stays consistent after a crash (a commit may be lost on power
		// failure, never half-applied). One connection serialises writers so
		// SQLite never answers SQLITE_BUSY to an upgrade from read to write.
		// The database holds sealed key secrets: 0600 whatever the umask,
		// and SQLite gives its -wal and -shm files the database's mode.
		if err := privateFile(dsn); err != nil {
			return nil, err
		}
		q := "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(ON)&_txlock=immediate"
		// A file: URI, so the path is percent-escaped: '?', '#' and '%'
		// in a directory name stay part of the path.
		s.db, err = sql.Open("sqlite", "file:"+(&url.URL{Path: dsn}).EscapedPath()+q)
		if err != nil {
			return nil, fmt.Errorf("open SQLite database %s: %w", dsn, err)
		}
		s.db.SetMaxOpenConns(1)
		s.db.SetConnMaxIdleTime(0)
		s.db.SetConnMaxLifetime(0)
	}
	if err := s.db.PingContext(ctx); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("connect to database %s: %w", redactDSN(dsn), err)
	}
	if err := s.migrate(ctx); err != nil {
		s.db.Close()
		return nil, err
	}
	if !s.postgres {
		for _, p := range []string{dsn + "-wal", dsn + "-shm"} {
			if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
				s.db.Close()
				return nil, fmt.Errorf("make %s private: %w", p, err)
			}
		}
	}
	s.enrollCh, s.quit, s.writerDone, s.flushDone = make(chan *enrollReq), make(chan struct{}), make(chan struct{}), make(chan struct{})
	// Several processes share a PostgreSQL database: one could not see
	// another's revocation in its cache.
	s.idents.enabled = !s.postgres
	go s.writer()
	go s.flusher()
	return s, nil
}

// privateFile creates path with mode 0600 if missing, or makes it 0600.
func privateFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open SQLite database %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("make %s private: %w", path, err)
	}
	return nil
}

// redactDSN drops a password from a URL so it can appear in an error.
func redactDSN(dsn string) string {
	if i := strings.Index(dsn, "://"); i >= 0 {
		if at := strings.LastIndex(dsn, "@"); at > i {
			userinfo := dsn[i+3 : at]
			if c := strings.Index(userinfo, ":"); c >= 0 {
				return dsn[:i+3] + userinfo[:c] + ":xxxxx" + dsn[at:]
			}
		}
	}
	return dsn
}

// Close writes the heartbeats not yet written and closes the database.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.quit != nil {
			close(s.quit)
			<-s.writerDone
			<-s.flushDone
		}
	})
	return s.db.Close()
}

// Postgres reports whether the store is PostgreSQL.
func (s *Store) Postgres() bool { return s.postgres }

// q rewrites ? placeholders to $n for PostgreSQL.
func (s *Store) q(query string) string {
	if !s.postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, c := range query {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

const schema = `
CREATE TABLE IF NOT EXISTS settings (
	name  TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS groups (
	name        TEXT PRIMARY KEY,
	location    TEXT NOT NULL,
	window_day  INTEGER NOT NULL,
	window_hour INTEGER NOT NULL,
	created_at  BIGINT NOT NULL,
	target_version    TEXT NOT NULL DEFAULT '',
	rollout_connector TEXT NOT NULL DEFAULT '',
	rollout_now       BIGINT NOT NULL DEFAULT 0,
	rollout_stopped   TEXT NOT NULL DEFAULT '',
	rollout_failed    TEXT NOT NULL DEFAULT '',
	rollout_version   TEXT NOT NULL DEFAULT '',
	allow_downgrade   BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS keys (
	id            TEXT PRIMARY KEY,
	name          TEXT NOT NULL UNIQUE,
	group_name    TEXT NOT NULL REFERENCES groups(name),
	signing_ca    TEXT NOT NULL,
	host          TEXT NOT NULL,
	pin           TEXT NOT NULL,
	max_uses      BIGINT NOT NULL,
	use_count     BIGINT NOT NULL DEFAULT 0,
	seq           BIGINT NOT NULL DEFAULT 0,
	expires_at    BIGINT NOT NULL,
	state         TEXT NOT NULL,
	secret_hash   TEXT NOT NULL,
	sealed_secret TEXT NOT NULL,
	generation    BIGINT NOT NULL DEFAULT 1,
	created_at    BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS connectors (
	name          TEXT PRIMARY KEY,
	key_id        TEXT NOT NULL,
	key_name      TEXT NOT NULL,
	group_name    TEXT NOT NULL,
	signing_ca    TEXT NOT NULL,
	fingerprint   TEXT NOT NULL,
	pubkey_hash   TEXT NOT NULL,
	nonce         TEXT NOT NULL,
	serial        TEXT NOT NULL UNIQUE,
	cert_pem      TEXT NOT NULL,
	cert_expires  BIGINT NOT NULL,
	enrolled_at   BIGINT NOT NULL,
	last_seen     BIGINT NOT NULL DEFAULT 0,
	version       TEXT NOT NULL DEFAULT '',
	uptime        BIGINT NOT NULL DEFAULT 0,
	state         TEXT NOT NULL,
	state_reason  TEXT NOT NULL DEFAULT '',
	addresses     TEXT NOT NULL DEFAULT '',
	skew          DOUBLE PRECISION NOT NULL DEFAULT 0,
	prev_serial   TEXT NOT NULL DEFAULT '',
	cert_pubkey_hash TEXT NOT NULL DEFAULT '',
	upgrade_target      TEXT NOT NULL DEFAULT '',
	upgrade_ordered_at  BIGINT NOT NULL DEFAULT 0,
	upgrade_state       TEXT NOT NULL DEFAULT '',
	upgrade_reason      TEXT NOT NULL DEFAULT '',
	upgrade_version     TEXT NOT NULL DEFAULT '',
	upgrade_reported_at BIGINT NOT NULL DEFAULT 0,
	UNIQUE (key_id, pubkey_hash)
);
CREATE INDEX IF NOT EXISTS connectors_group ON connectors(group_name);
CREATE TABLE IF NOT EXISTS enroll_failures (
	source       TEXT NOT NULL,
	key_id       TEXT NOT NULL,
	window_start BIGINT NOT NULL,
	count        BIGINT NOT NULL,
	PRIMARY KEY (source, key_id)
);
CREATE TABLE IF NOT EXISTS releases (
	version      TEXT PRIMARY KEY,
	name         TEXT NOT NULL,
	architecture TEXT NOT NULL,
	size         BIGINT NOT NULL,
	sha256       TEXT NOT NULL,
	image_size   BIGINT NOT NULL,
	published_at BIGINT NOT NULL
);
`

// addedColumns are the columns added to tables after their first
// release. CREATE TABLE IF NOT EXISTS leaves an older table as it was, so
// migrate adds each one that is missing.
var addedColumns = []struct{ table, column, def string }{
	{"connectors", "addresses", "TEXT NOT NULL DEFAULT ''"},
	{"connectors", "skew", "DOUBLE PRECISION NOT NULL DEFAULT 0"},
	{"connectors", "prev_serial", "TEXT NOT NULL DEFAULT ''"},
	{"connectors", "cert_pubkey_hash", "TEXT NOT NULL DEFAULT ''"},
	{"connectors", "upgrade_target", "TEXT NOT NULL DEFAULT ''"},
	{"connectors", "upgrade_ordered_at", "BIGINT NOT NULL DEFAULT 0"},
	{"connectors", "upgrade_state", "TEXT NOT NULL DEFAULT ''"},
	{"connectors", "upgrade_reason", "TEXT NOT NULL DEFAULT ''"},
	{"connectors", "upgrade_version", "TEXT NOT NULL DEFAULT ''"},
	{"connectors", "upgrade_reported_at", "BIGINT NOT NULL DEFAULT 0"},
	{"groups", "target_version", "TEXT NOT NULL DEFAULT ''"},
	{"groups", "allow_downgrade", "BIGINT NOT NULL DEFAULT 0"},
	{"groups", "rollout_connector", "TEXT NOT NULL DEFAULT ''"},
	{"groups", "rollout_now", "BIGINT NOT NULL DEFAULT 0"},
	{"groups", "rollout_stopped", "TEXT NOT NULL DEFAULT ''"},
	{"groups", "rollout_failed", "TEXT NOT NULL DEFAULT ''"},
	{"groups", "rollout_version", "TEXT NOT NULL DEFAULT ''"},
}

// indexes need the added columns, so they come after them.
const indexes = `CREATE INDEX IF NOT EXISTS connectors_prev_serial ON connectors(prev_serial);`

// sqlConn is what migrate needs of a *sql.DB or a *sql.Conn.
type sqlConn interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func (s *Store) migrate(ctx context.Context) error {
	if s.postgres {
		// Two servers starting at once must not race on CREATE TABLE.
		conn, err := s.db.Conn(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock(727001)"); err != nil {
			return fmt.Errorf("lock schema: %w", err)
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(727001)")
		return s.migrateOn(ctx, conn)
	}
	return s.migrateOn(ctx, s.db)
}

func (s *Store) migrateOn(ctx context.Context, db sqlConn) error {
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	for _, c := range addedColumns {
		have, err := s.columns(ctx, db, c.table)
		if err != nil {
			return fmt.Errorf("read the columns of table %s: %w", c.table, err)
		}
		if have[c.column] {
			continue
		}
		if _, err := db.ExecContext(ctx, "ALTER TABLE "+c.table+" ADD COLUMN "+c.column+" "+c.def); err != nil {
			return fmt.Errorf("add column %s.%s to the database of an older version: %w", c.table, c.column, err)
		}
	}
	if _, err := db.ExecContext(ctx, indexes); err != nil {
		return fmt.Errorf("create indexes: %w", err)
	}
	return nil
}

// columns lists the columns table has.
func (s *Store) columns(ctx context.Context, db sqlConn, table string) (map[string]bool, error) {
	q := "SELECT name FROM pragma_table_info(?)"
	if s.postgres {
		q = "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1"
	}
	rows, err := db.QueryContext(ctx, q, table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	have := map[string]bool{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		have[n] = true
	}
	return have, rows.Err()
}

// Setting returns a setting's value, or ErrNotFound.
func (s *Store) Setting(ctx context.Context, name string) (string, error) {
	var v string
	err := s.db.QueryRowContext(ctx, s.q("SELECT value FROM settings WHERE name = ?"), name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	return v, err
}

// InitSetting stores value under name unless a value exists, and returns
// the stored value either way.
func (s *Store) InitSetting(ctx context.Context, name, value string) (string, error) {
	if _, err := s.db.ExecContext(ctx, s.q("INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING"), name, value); err != nil {
		return "", fmt.Errorf("store setting %s: %w", name, err)
	}
	return s.Setting(ctx, name)
}

// Group is a connector group.
type Group struct {
	Name       string
	Location   string
	WindowDay  int // 0 Sunday … 6 Saturday
	WindowHour int // start hour, UTC; the window lasts 4 hours
	CreatedAt  time.Time
	Keys       int
	Connectors int
	// TargetVersion is the pinned release; "" follows the newest.
	TargetVersion string
	// AllowDowngrade brings connectors newer than a pinned target down.
	AllowDowngrade bool
	Rollout        Rollout
}

// Rollout is a group's upgrade state as the scheduler keeps it.
type Rollout struct {
	// Connector is being upgraded ("" none): at most one per group, claimed
	// with a conditional update of the group's row.
	Connector string
	// Now: an admin started the rollout outside the window; cleared when
	// no connector is left to upgrade.
	Now bool
	// Stopped is why the rollout stopped ("" running); Failed is the
	// connector that failed and Version the version it failed on.
	Stopped, Failed, Version string
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// CreateGroup adds a group; ErrExists if the name is taken.
func (s *Store) CreateGroup(ctx context.Context, g Group) error {
	res, err := s.db.ExecContext(ctx, s.q("INSERT INTO groups (name, location, window_day, window_hour, created_at, target_version, allow_downgrade) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING"),
		g.Name, g.Location, g.WindowDay, g.WindowHour, ms(g.CreatedAt), g.TargetVersion, boolInt(g.AllowDowngrade))
	if err != nil {
		return fmt.Errorf("create group %s: %w", g.Name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrExists
	}
	return nil
}

const groupCols = `g.name, g.location, g.window_day, g.window_hour, g.created_at,
	(SELECT COUNT(*) FROM keys k WHERE k.group_name = g.name),
	(SELECT COUNT(*) FROM connectors c WHERE c.group_name = g.name AND c.state <> 'revoked'),
	g.target_version, g.rollout_connector, g.rollout_now, g.rollout_stopped, g.rollout_failed, g.rollout_version, g.allow_downgrade`

func scanGroup(sc interface{ Scan(...any) error }) (Group, error) {
	var g Group
	var created, now, down int64
	err := sc.Scan(&g.Name, &g.Location, &g.WindowDay, &g.WindowHour, &created, &g.Keys, &g.Connectors,
		&g.TargetVersion, &g.Rollout.Connector, &now, &g.Rollout.Stopped, &g.Rollout.Failed, &g.Rollout.Version, &down)
	g.CreatedAt = fromMS(created)
	g.AllowDowngrade = down != 0
	g.Rollout.Now = now != 0
	return g, err
}

// Groups lists all groups by name.
func (s *Store) Groups(ctx context.Context) ([]Group, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+groupCols+" FROM groups g ORDER BY g.name")
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	defer rows.Close()
	out := []Group{}
	for rows.Next() {
		g, err := scanGroup(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

// Group returns one group or ErrNotFound.
func (s *Store) Group(ctx context.Context, name string) (Group, error) {
	g, err := scanGroup(s.db.QueryRowContext(ctx, s.q("SELECT "+groupCols+" FROM groups g WHERE g.name = ?"), name))
	if errors.Is(err, sql.ErrNoRows) {
		return g, ErrNotFound
	}
	return g, err
}

// UpdateGroup replaces a group's location, window and target version. A
// new target clears a stopped rollout: the stop was about another version.
func (s *Store) UpdateGroup(ctx context.Context, g Group) error {
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE groups SET location = ?, window_day = ?, window_hour = ?, allow_downgrade = ?, target_version = ?,
		rollout_stopped = CASE WHEN target_version = ? THEN rollout_stopped ELSE '' END,
		rollout_failed = CASE WHEN target_version = ? THEN rollout_failed ELSE '' END,
		rollout_version = CASE WHEN target_version = ? THEN rollout_version ELSE '' END
		WHERE name = ?`), g.Location, g.WindowDay, g.WindowHour, boolInt(g.AllowDowngrade), g.TargetVersion, g.TargetVersion, g.TargetVersion, g.TargetVersion, g.Name)
	if err != nil {
		return fmt.Errorf("update group %s: %w", g.Name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// DeleteGroup deletes a group. With force it first deletes the group's keys
// and revokes its connectors; without, the caller has checked it is empty.
func (s *Store) DeleteGroup(ctx context.Context, name string, force bool, now time.Time) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if force {
		if _, err := tx.ExecContext(ctx, s.q("DELETE FROM keys WHERE group_name = ?"), name); err != nil {
			return fmt.Errorf("delete keys of group %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, s.q("UPDATE connectors SET state = 'revoked', state_reason = ? WHERE group_name = ? AND state <> 'revoked'"),
			"its group "+name+" was deleted", name); err != nil {
			return fmt.Errorf("revoke connectors of group %s: %w", name, err)
		}
	}
	res, err := tx.ExecContext(ctx, s.q("DELETE FROM groups WHERE name = ?"), name)
	if err != nil {
		return fmt.Errorf("delete group %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	err = tx.Commit()
	s.idents.invalidate()
	return err
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }
