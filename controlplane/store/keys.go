package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Key states.
const (
	KeyActive  = "active"
	KeyRevoked = "revoked"
)

// Key is a provisioning key's record. The secret is present only as its
// hash and sealed (encrypted by the service).
type Key struct {
	ID         string
	Name       string
	Group      string
	SigningCA  string
	Host       string
	Pin        string
	MaxUses    int64
	UseCount   int64
	Seq        int64
	ExpiresAt  time.Time // zero: never
	State      string
	SecretHash string
	Sealed     string
	Generation int64
	CreatedAt  time.Time
}

const keyCols = "id, name, group_name, signing_ca, host, pin, max_uses, use_count, seq, expires_at, state, secret_hash, sealed_secret, generation, created_at"

func scanKey(sc interface{ Scan(...any) error }) (Key, error) {
	var k Key
	var exp, created int64
	err := sc.Scan(&k.ID, &k.Name, &k.Group, &k.SigningCA, &k.Host, &k.Pin, &k.MaxUses, &k.UseCount, &k.Seq, &exp, &k.State, &k.SecretHash, &k.Sealed, &k.Generation, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return k, ErrNotFound
	}
	k.ExpiresAt, k.CreatedAt = fromMS(exp), fromMS(created)
	return k, err
}

// CreateKey adds a key. Naming of its connectors continues after any
// connectors an earlier key of the same name enrolled.
func (s *Store) CreateKey(ctx context.Context, k Key) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var g string
	if err := tx.QueryRowContext(ctx, s.q("SELECT name FROM groups WHERE name = ?"), k.Group).Scan(&g); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("group %q: %w", k.Group, ErrNotFound)
		}
		return err
	}
	var seq int64
	if err := tx.QueryRowContext(ctx, s.q("SELECT COUNT(*) FROM connectors WHERE key_name = ?"), k.Name).Scan(&seq); err != nil {
		return err
	}
	res, err := tx.ExecContext(ctx, s.q("INSERT INTO keys ("+keyCols+") VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, 1, ?) ON CONFLICT (name) DO NOTHING"),
		k.ID, k.Name, k.Group, k.SigningCA, k.Host, k.Pin, k.MaxUses, seq, ms(k.ExpiresAt), KeyActive, k.SecretHash, k.Sealed, ms(k.CreatedAt))
	if err != nil {
		return fmt.Errorf("create key %s: %w", k.Name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrExists
	}
	return tx.Commit()
}

// KeyFilter selects keys; empty fields match everything.
type KeyFilter struct{ Group, Name, State string }

// Keys lists keys by name.
func (s *Store) Keys(ctx context.Context, f KeyFilter) ([]Key, error) {
	var where []string
	var args []any
	if f.Group != "" {
		where, args = append(where, "group_name = ?"), append(args, f.Group)
	}
	if f.Name != "" {
		where, args = append(where, "name = ?"), append(args, f.Name)
	}
	if f.State != "" {
		where, args = append(where, "state = ?"), append(args, f.State)
	}
	q := "SELECT " + keyCols + " FROM keys"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	rows, err := s.db.QueryContext(ctx, s.q(q+" ORDER BY name"), args...)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	defer rows.Close()
	out := []Key{}
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// KeyByName returns a key or ErrNotFound.
func (s *Store) KeyByName(ctx context.Context, name string) (Key, error) {
	return scanKey(s.db.QueryRowContext(ctx, s.q("SELECT "+keyCols+" FROM keys WHERE name = ?"), name))
}

// KeyByID returns a key or ErrNotFound.
func (s *Store) KeyByID(ctx context.Context, id string) (Key, error) {
	st, err := s.prepared(ctx, s.q("SELECT "+keyCols+" FROM keys WHERE id = ?"))
	if err != nil {
		return Key{}, err
	}
	return scanKey(st.QueryRowContext(ctx, id))
}

// SetMaxUses changes a key's maximum; ErrConflict if it is below the count.
func (s *Store) SetMaxUses(ctx context.Context, name string, max int64) error {
	res, err := s.db.ExecContext(ctx, s.q("UPDATE keys SET max_uses = ? WHERE name = ? AND use_count <= ?"), max, name, max)
	if err != nil {
		return fmt.Errorf("edit key %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := s.KeyByName(ctx, name); err != nil {
			return err
		}
		return ErrConflict
	}
	return nil
}

// Regenerate replaces a key's secret and bumps its generation.
func (s *Store) Regenerate(ctx context.Context, name, secretHash, sealed string) error {
	res, err := s.db.ExecContext(ctx, s.q("UPDATE keys SET secret_hash = ?, sealed_secret = ?, generation = generation + 1 WHERE name = ?"), secretHash, sealed, name)
	if err != nil {
		return fmt.Errorf("regenerate key %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// SetKeyState sets a key's state (KeyRevoked).
func (s *Store) SetKeyState(ctx context.Context, name, state string) error {
	res, err := s.db.ExecContext(ctx, s.q("UPDATE keys SET state = ? WHERE name = ?"), state, name)
	if err != nil {
		return fmt.Errorf("change key %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// DeleteKey removes a key; its connectors stay.
func (s *Store) DeleteKey(ctx context.Context, name string) error {
	res, err := s.db.ExecContext(ctx, s.q("DELETE FROM keys WHERE name = ?"), name)
	if err != nil {
		return fmt.Errorf("delete key %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// Connector states.
const (
	ConnectorActive  = "active"
	ConnectorBlocked = "blocked"
	ConnectorRevoked = "revoked"
)

// Connector is an enrolled appliance.
type Connector struct {
	Name        string
	KeyID       string
	KeyName     string
	Group       string
	SigningCA   string
	Fingerprint string
	PubKeyHash  string
	Nonce       string
	Serial      string
	CertPEM     string
	CertExpires time.Time
	EnrolledAt  time.Time
	LastSeen    time.Time // zero: never
	Version     string
	Uptime      int64
	State       string
	StateReason string
	Addresses   []string // as last reported
	Skew        float64  // seconds, the connector's clock minus ours, as last reported
	// PrevSerial is the certificate a renewal replaced, accepted until the
	// connector uses the new one; empty otherwise.
	PrevSerial string
	// CertPubKeyHash is hex SHA-256 of the current certificate's public
	// key: PubKeyHash until the first renewal.
	CertPubKeyHash string
	Upgrade        Upgrade
}

// Upgrade is a connector's part in its group's rollout: the order it was
// given and what it last reported.
type Upgrade struct {
	Target    string    // the version it was ordered to install; "" none
	OrderedAt time.Time // when
	// State, Reason and Version are its last report (cpapi.UpgradeReport),
	// received at ReportedAt.
	State, Reason, Version string
	ReportedAt             time.Time
}

const connCols = "name, key_id, key_name, group_name, signing_ca, fingerprint, pubkey_hash, nonce, serial, cert_pem, cert_expires, enrolled_at, last_seen, version, uptime, state, state_reason, addresses, skew, prev_serial, cert_pubkey_hash" +
	", upgrade_target, upgrade_ordered_at, upgrade_state, upgrade_reason, upgrade_version, upgrade_reported_at"

// scanConnector reads a row of connCols and shows the heartbeats not yet
// written.
func (s *Store) scanConnector(sc interface{ Scan(...any) error }) (Connector, error) {
	var c Connector
	var exp, enr, seen, ordered, reported int64
	var addrs string
	u := &c.Upgrade
	err := sc.Scan(&c.Name, &c.KeyID, &c.KeyName, &c.Group, &c.SigningCA, &c.Fingerprint, &c.PubKeyHash, &c.Nonce, &c.Serial, &c.CertPEM, &exp, &enr, &seen, &c.Version, &c.Uptime, &c.State, &c.StateReason,
		&addrs, &c.Skew, &c.PrevSerial, &c.CertPubKeyHash, &u.Target, &ordered, &u.State, &u.Reason, &u.Version, &reported)
	if errors.Is(err, sql.ErrNoRows) {
		return c, ErrNotFound
	}
	c.CertExpires, c.EnrolledAt, c.LastSeen = fromMS(exp), fromMS(enr), fromMS(seen)
	u.OrderedAt, u.ReportedAt = fromMS(ordered), fromMS(reported)
	c.Addresses = splitAddresses(addrs)
	if c.CertPubKeyHash == "" {
		c.CertPubKeyHash = c.PubKeyHash
	}
	s.beats.overlay(&c)
	return c, err
}

// Addresses are stored as one column, separated by spaces (an address
// with its prefix has none).
func joinAddresses(a []string) string { return strings.Join(a, " ") }

func splitAddresses(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, " ")
}

// ConnectorByCSR finds the connector a key enrolled with this public key.
func (s *Store) ConnectorByCSR(ctx context.Context, keyID, pubKeyHash string) (Connector, error) {
	return s.scanConnector(s.db.QueryRowContext(ctx, s.q("SELECT "+connCols+" FROM connectors WHERE key_id = ? AND pubkey_hash = ?"), keyID, pubKeyHash))
}

// ConnectorByName returns a connector or ErrNotFound.
func (s *Store) ConnectorByName(ctx context.Context, name string) (Connector, error) {
	return s.scanConnector(s.db.QueryRowContext(ctx, s.q("SELECT "+connCols+" FROM connectors WHERE name = ?"), name))
}

// Connectors lists connectors, optionally of one group, by enrollment time.
func (s *Store) Connectors(ctx context.Context, group string) ([]Connector, error) {
	q, args := "SELECT "+connCols+" FROM connectors", []any{}
	if group != "" {
		q, args = q+" WHERE group_name = ?", append(args, group)
	}
	rows, err := s.db.QueryContext(ctx, s.q(q+" ORDER BY enrolled_at, name"), args...)
	if err != nil {
		return nil, fmt.Errorf("list connectors: %w", err)
	}
	defer rows.Close()
	out := []Connector{}
	for rows.Next() {
		c, err := s.scanConnector(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// CountIssued returns how many connector certificates a key has issued.
func (s *Store) CountIssued(ctx context.Context, keyID string) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, s.q("SELECT COUNT(*) FROM connectors WHERE key_id = ?"), keyID).Scan(&n)
	return n, err
}

// CountEnrolled returns how many connectors a key enrolled that are not
// revoked.
func (s *Store) CountEnrolled(ctx context.Context, keyID string) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, s.q("SELECT COUNT(*) FROM connectors WHERE key_id = ? AND state <> 'revoked'"), keyID).Scan(&n)
	return n, err
}

// SetConnectorState changes a connector's state and reason.
func (s *Store) SetConnectorState(ctx context.Context, name, state, reason string) error {
	res, err := s.db.ExecContext(ctx, s.q("UPDATE connectors SET state = ?, state_reason = ? WHERE name = ?"), state, reason, name)
	s.idents.invalidate()
	if err != nil {
		return fmt.Errorf("change connector %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}
