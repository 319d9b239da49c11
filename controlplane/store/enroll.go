package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"sync"
	"time"
)

// Enrollment is what Enroll records.
type Enrollment struct {
	KeyID       string
	Generation  int64 // the key generation whose secret was checked
	Fingerprint string
	PubKeyHash  string
	Nonce       string
	Now         time.Time
	// Sign issues the certificate once the connector's name is known. It
	// runs inside the transaction (possibly on another goroutine, in
	// parallel with other enrollments): if it fails nothing is counted.
	Sign func(name string) (serial, certPEM string, expires time.Time, err error)
}

type enrollReq struct {
	e    Enrollment
	c    Connector
	err  error
	done chan struct{}
}

// maxBatch bounds how many enrollments share one transaction.
const maxBatch = 256

// Enroll counts one use of the key and records the connector in a single
// transaction. The count is a conditional UPDATE, so concurrent enrollments
// (in any number of processes) never exceed max_uses. It returns ErrNoUse
// when the key is exhausted, revoked, expired or regenerated meanwhile, and
// ErrExists when this key already enrolled the same public key.
//
// Concurrent calls are group-committed: one writer goroutine takes every
// waiting enrollment into one transaction, signs their certificates in
// parallel and commits once. A caller returns only after the commit, so an
// answer a client received is always recorded, and a crash loses whole
// enrollments (count and certificate together), never half of one.
func (s *Store) Enroll(ctx context.Context, e Enrollment) (Connector, error) {
	r := &enrollReq{e: e, done: make(chan struct{})}
	select {
	case s.enrollCh <- r:
	case <-ctx.Done():
		return Connector{}, ctx.Err()
	case <-s.quit:
		return Connector{}, errors.New("the store is closed")
	}
	<-r.done // not ctx: the batch may commit this enrollment
	return r.c, r.err
}

func (s *Store) writer() {
	defer close(s.writerDone)
	for {
		var batch []*enrollReq
		select {
		case r := <-s.enrollCh:
			batch = append(batch, r)
		case <-s.quit:
			return
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case r := <-s.enrollCh:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		// Lock keys in one order in every process, so that two servers
		// sharing PostgreSQL never deadlock; a key's own enrollments keep
		// their arrival order (names follow it).
		sort.SliceStable(batch, func(i, j int) bool { return batch[i].e.KeyID < batch[j].e.KeyID })
		var err error
		for attempt := 0; attempt < 3; attempt++ {
			for _, r := range batch {
				r.c, r.err = Connector{}, nil
			}
			if err = s.runBatch(batch); err == nil {
				break
			}
		}
		for _, r := range batch {
			if err != nil && r.err == nil {
				r.err = err
			}
			close(r.done)
		}
	}
}

const (
	qCount = `UPDATE keys SET use_count = use_count + 1, seq = seq + 1
		WHERE id = ? AND use_count < max_uses AND state = 'active' AND generation = ? AND (expires_at = 0 OR expires_at > ?)
		RETURNING seq, name, group_name, signing_ca`
	qUncount = `UPDATE keys SET use_count = use_count - 1, seq = seq - 1 WHERE id = ?`
	qInsert  = "INSERT INTO connectors (" + connCols + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '', 0, ?, 0, '', 0, ?, '', '', 0, '', '', '', 0, '', '', '', 0) ON CONFLICT DO NOTHING"
	qCert    = `UPDATE connectors SET cert_pem = ?, serial = ?, cert_expires = ? WHERE name = ?`
)

// runBatch records a batch in one transaction: count and insert each
// (sequentially, so names follow the order of the count), sign all in
// parallel, store the certificates, commit. An error fails the whole batch.
func (s *Store) runBatch(batch []*enrollReq) error {
	ctx := context.Background()
	stmts := make([]*sql.Stmt, 4)
	for i, q := range []string{qCount, qUncount, qInsert, qCert} {
		st, err := s.prepared(ctx, s.q(q))
		if err != nil {
			return fmt.Errorf("prepare enrollment: %w", err)
		}
		stmts[i] = st
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin enrollment: %w", err)
	}
	defer tx.Rollback()
	count, uncount, insert, cert := tx.Stmt(stmts[0]), tx.Stmt(stmts[1]), tx.Stmt(stmts[2]), tx.Stmt(stmts[3])
	var ok []*enrollReq
	for _, r := range batch {
		e := r.e
		now := ms(e.Now)
		var seq int64
		var keyName, group, ca string
		err := count.QueryRowContext(ctx, e.KeyID, e.Generation, now).Scan(&seq, &keyName, &group, &ca)
		if errors.Is(err, sql.ErrNoRows) {
			r.err = ErrNoUse
			continue
		}
		if err != nil {
			return fmt.Errorf("count key use: %w", err)
		}
		r.c = Connector{
			Name: fmt.Sprintf("%s-%d", keyName, seq), KeyID: e.KeyID, KeyName: keyName, Group: group, SigningCA: ca,
			Fingerprint: e.Fingerprint, PubKeyHash: e.PubKeyHash, Nonce: e.Nonce, EnrolledAt: fromMS(now), State: ConnectorActive,
			Serial: "pending-" + e.KeyID + "-" + e.PubKeyHash,
		}
		c := r.c
		res, err := insert.ExecContext(ctx, c.Name, c.KeyID, c.KeyName, c.Group, c.SigningCA, c.Fingerprint, c.PubKeyHash, c.Nonce, c.Serial, now, c.State)
		if err != nil {
			return fmt.Errorf("record connector %s: %w", c.Name, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			// Same key pair already enrolled (or being enrolled in this
			// batch): undo this count, which is the key's latest change.
			if _, err := uncount.ExecContext(ctx, e.KeyID); err != nil {
				return fmt.Errorf("undo key use: %w", err)
			}
			r.c, r.err = Connector{}, ErrExists
			continue
		}
		ok = append(ok, r)
	}
	// Sign in parallel: signing is the costly part and needs no database.
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for _, r := range ok {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			r.c.Serial, r.c.CertPEM, r.c.CertExpires, r.err = r.e.Sign(r.c.Name)
		}()
	}
	wg.Wait()
	for _, r := range ok {
		if r.err != nil {
			return r.err
		}
		if _, err := cert.ExecContext(ctx, r.c.CertPEM, r.c.Serial, ms(r.c.CertExpires), r.c.Name); err != nil {
			return fmt.Errorf("record certificate of %s: %w", r.c.Name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit enrollment: %w", err)
	}
	return nil
}
