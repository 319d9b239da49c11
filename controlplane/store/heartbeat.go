package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// FlushInterval is how often heartbeats are written to the database. Until
// then this store's reads show them; other processes sharing a PostgreSQL
// database see them up to FlushInterval late.
const FlushInterval = time.Second

// Beat is what a heartbeat records.
type Beat struct {
	At        time.Time
	Version   string
	Uptime    int64
	Addresses []string
	Skew      float64
}

// beats coalesces heartbeats in memory: only a connector's latest counts,
// and all of them are written in one transaction per FlushInterval. One
// UPDATE per heartbeat would make the database the limit of how many
// connectors a control plane serves.
type beats struct {
	mu       sync.Mutex
	pending  map[string]Beat // by connector name
	inflight map[string]Beat // being written by flush
	flushMu  sync.Mutex      // one flush at a time
}

// Heartbeat records a connector's report. It is written within
// FlushInterval (and on Close); reads through this store show it at once.
// A crash loses at most the last FlushInterval of heartbeats.
func (s *Store) Heartbeat(name string, b Beat) {
	s.beats.mu.Lock()
	if s.beats.pending == nil {
		s.beats.pending = map[string]Beat{}
	}
	s.beats.pending[name] = b
	s.beats.mu.Unlock()
}

func (b *beats) overlay(c *Connector) {
	b.mu.Lock()
	defer b.mu.Unlock()
	beat, ok := b.pending[c.Name]
	if !ok {
		beat, ok = b.inflight[c.Name]
	}
	if ok && ms(beat.At) >= ms(c.LastSeen) {
		c.LastSeen, c.Version, c.Uptime, c.Addresses, c.Skew = fromMS(ms(beat.At)), beat.Version, beat.Uptime, beat.Addresses, beat.Skew
	}
}

func (s *Store) flusher() {
	defer close(s.flushDone)
	t := time.NewTicker(FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			// A failure leaves the heartbeats pending for the next tick;
			// reads keep showing them meanwhile.
			s.Flush(context.Background())
		case <-s.quit:
			s.Flush(context.Background())
			return
		}
	}
}

const qBeat = "UPDATE connectors SET last_seen = ?, version = ?, uptime = ?, addresses = ?, skew = ? WHERE name = ?"

// Flush writes the heartbeats recorded so far in one transaction. On
// failure they stay pending (unless a newer heartbeat replaced them).
func (s *Store) Flush(ctx context.Context) error {
	s.beats.flushMu.Lock()
	defer s.beats.flushMu.Unlock()
	s.beats.mu.Lock()
	batch := s.beats.pending
	s.beats.pending, s.beats.inflight = nil, batch
	s.beats.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	err := s.writeBeats(ctx, batch)
	s.beats.mu.Lock()
	if err != nil {
		if s.beats.pending == nil {
			s.beats.pending = map[string]Beat{}
		}
		for name, b := range batch {
			if _, newer := s.beats.pending[name]; !newer {
				s.beats.pending[name] = b
			}
		}
	}
	s.beats.inflight = nil
	s.beats.mu.Unlock()
	return err
}

func (s *Store) writeBeats(ctx context.Context, batch map[string]Beat) error {
	st, err := s.prepared(ctx, s.q(qBeat))
	if err != nil {
		return fmt.Errorf("prepare heartbeat update: %w", err)
	}
	// One order in every process, so two servers sharing PostgreSQL never
	// deadlock on each other's rows.
	names := make([]string, 0, len(batch))
	for n := range batch {
		names = append(names, n)
	}
	slices.Sort(names)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("record heartbeats: %w", err)
	}
	defer tx.Rollback()
	up := tx.Stmt(st)
	for _, n := range names {
		b := batch[n]
		if _, err := up.ExecContext(ctx, ms(b.At), b.Version, b.Uptime, joinAddresses(b.Addresses), b.Skew, n); err != nil {
			return fmt.Errorf("record heartbeat of %s: %w", n, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("record heartbeats: %w", err)
	}
	return nil
}

// Holder is what a heartbeat or a renewal needs to know about the
// connector holding a certificate.
type Holder struct {
	Name        string
	Fingerprint string
	State       string
	StateReason string
	// Previous: the serial is that of the certificate a renewal replaced,
	// still accepted until the connector uses the new one.
	Previous bool
	// Renewing: a previous certificate is still accepted.
	Renewing bool
	// Upgrade is the connector's upgrade order and last report, so that a
	// heartbeat answers an order without another read.
	Upgrade Upgrade
}

// idents caches ConnectorByCert, so a heartbeat costs no database read.
// Every change of a connector's state, serial or fingerprint invalidates
// it (through this store); it is off for PostgreSQL, where another process
// may revoke.
type idents struct {
	enabled bool
	mu      sync.Mutex
	gen     uint64 // bumped by each invalidation
	m       map[string]Holder
}

func (c *idents) get(serial string) (Holder, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.m[serial]
	return h, c.gen, ok
}

// put caches h unless an invalidation happened since gen was read (the row
// h came from may be older than that change).
func (c *idents) put(serial string, h Holder, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if c.m == nil {
		c.m = map[string]Holder{}
	}
	c.m[serial] = h
}

// invalidate forgets everything: called after each change of a
// connector's state or certificate, which are rare next to heartbeats.
func (c *idents) invalidate() {
	c.mu.Lock()
	c.gen++
	clear(c.m)
	c.mu.Unlock()
}

// ConnectorByCert returns the connector holding the certificate with
// serial, current or previous, or ErrNotFound.
func (s *Store) ConnectorByCert(ctx context.Context, serial string) (Holder, error) {
	h, gen, ok := s.idents.get(serial)
	if ok && s.idents.enabled {
		return h, nil
	}
	st, err := s.prepared(ctx, s.q(`SELECT name, fingerprint, state, state_reason, serial, prev_serial,
		upgrade_target, upgrade_ordered_at, upgrade_state, upgrade_reason, upgrade_version, upgrade_reported_at
		FROM connectors WHERE serial = ? OR (prev_serial = ? AND prev_serial <> '')`))
	if err != nil {
		return Holder{}, err
	}
	var cur, prev string
	var ordered, reported int64
	u := &h.Upgrade
	err = st.QueryRowContext(ctx, serial, serial).Scan(&h.Name, &h.Fingerprint, &h.State, &h.StateReason, &cur, &prev,
		&u.Target, &ordered, &u.State, &u.Reason, &u.Version, &reported)
	u.OrderedAt, u.ReportedAt = fromMS(ordered), fromMS(reported)
	if errors.Is(err, sql.ErrNoRows) {
		return Holder{}, ErrNotFound
	}
	if err != nil {
		return Holder{}, fmt.Errorf("find the connector of certificate %s: %w", serial, err)
	}
	h.Previous, h.Renewing = cur != serial, prev != ""
	if s.idents.enabled {
		s.idents.put(serial, h, gen)
	}
	return h, nil
}

// Renewal is a connector's new certificate.
type Renewal struct {
	Name string
	// From is the serial of the certificate the request came with;
	// Current the serial the renewal replaces, which must still be current.
	From, Current string
	Serial        string
	CertPEM       string
	Expires       time.Time
	PubKeyHash    string // of the new certificate's key
}

// Renew records a new certificate for an active connector. The
// certificate the connector presented (From) stays accepted until
// ForgetPrevious: when it was the current one it becomes the previous;
// when it already was the previous (a retry after a lost answer), it
// stays so and the certificate it never received is dropped. ErrConflict:
// Current is no longer current or the connector is no longer active.
func (s *Store) Renew(ctx context.Context, r Renewal) error {
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE connectors SET prev_serial = CASE WHEN serial = ? THEN serial ELSE prev_serial END,
		serial = ?, cert_pem = ?, cert_expires = ?, cert_pubkey_hash = ? WHERE name = ? AND serial = ? AND state = 'active'`),
		r.From, r.Serial, r.CertPEM, ms(r.Expires), r.PubKeyHash, r.Name, r.Current)
	s.idents.invalidate()
	if err != nil {
		return fmt.Errorf("record the renewed certificate of %s: %w", r.Name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrConflict
	}
	return nil
}

// ForgetPrevious stops accepting a connector's previous certificate, once
// it used the one with serial (still current).
func (s *Store) ForgetPrevious(ctx context.Context, name, serial string) error {
	_, err := s.db.ExecContext(ctx, s.q("UPDATE connectors SET prev_serial = '' WHERE name = ? AND serial = ?"), name, serial)
	s.idents.invalidate()
	if err != nil {
		return fmt.Errorf("forget the previous certificate of %s: %w", name, err)
	}
	return nil
}
