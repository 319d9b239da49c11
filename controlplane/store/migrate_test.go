package store

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/internal/pgtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.StopShared()
	os.Exit(code)
}

// schemaV1 is the groups and connectors tables as the first release
// created them.
const schemaV1 = `
CREATE TABLE groups (
	name        TEXT PRIMARY KEY,
	location    TEXT NOT NULL,
	window_day  INTEGER NOT NULL,
	window_hour INTEGER NOT NULL,
	created_at  BIGINT NOT NULL
);
INSERT INTO groups (name, location, window_day, window_hour, created_at) VALUES ('g', 'Old DC', 6, 1, 1700000000000);
CREATE TABLE connectors (
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
	UNIQUE (key_id, pubkey_hash)
);
INSERT INTO connectors (name, key_id, key_name, group_name, signing_ca, fingerprint, pubkey_hash, nonce, serial, cert_pem, cert_expires, enrolled_at, last_seen, version, uptime, state)
VALUES ('Old-1', 'k', 'Old', 'g', 'Connector', 'mac=x', 'ph', 'n', '0a', 'PEM', 1, 1, 1700000000000, '1.0', 5, 'active');
`

// backends runs f against a SQLite file and a fresh PostgreSQL database.
func backends(t *testing.T, f func(t *testing.T, dsn string)) {
	t.Run("sqlite", func(t *testing.T) { f(t, filepath.Join(t.TempDir(), "x.db")) })
	t.Run("postgres", func(t *testing.T) { f(t, pgtest.Shared(t).NewDatabase(t)) })
}

// TestMigrateFromFirstRelease: a database made by the first release gains
// the columns added since, keeps its rows, and works for heartbeats and
// renewals; opening it again changes nothing.
func TestMigrateFromFirstRelease(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		driver, name := "sqlite", dsn
		if strings.HasPrefix(dsn, "postgres") {
			driver = "pgx"
		}
		old, err := sql.Open(driver, name)
		if err != nil {
			t.Fatal(err)
		}
		for _, stmt := range strings.Split(schemaV1, ";") {
			if strings.TrimSpace(stmt) == "" {
				continue
			}
			if _, err := old.Exec(stmt); err != nil {
				t.Fatalf("old schema: %v", err)
			}
		}
		old.Close()
		for range 2 {
			s, err := Open(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range addedColumns {
				have, err := s.columns(ctx, s.db, c.table)
				if err != nil {
					t.Fatal(err)
				}
				if !have[c.column] {
					t.Errorf("column %s.%s was not added", c.table, c.column)
				}
			}
			g, err := s.Group(ctx, "g")
			if err != nil {
				t.Fatal(err)
			}
			if g.Location != "Old DC" || g.WindowDay != 6 || g.TargetVersion != "" || g.Rollout != (Rollout{}) || g.Connectors != 1 {
				t.Errorf("old group after migration: %+v", g)
			}
			c, err := s.ConnectorByName(ctx, "Old-1")
			if err != nil {
				t.Fatal(err)
			}
			if c.Version != "1.0" || c.Uptime != 5 || c.Addresses != nil || c.Skew != 0 || c.PrevSerial != "" || c.CertPubKeyHash != "ph" || c.Upgrade != (Upgrade{}) {
				t.Errorf("old row after migration: %+v", c)
			}
			s.Close()
		}
		s, err := Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		at := time.UnixMilli(1800000000000).UTC()
		s.Heartbeat("Old-1", Beat{At: at, Version: "2.0", Uptime: 9, Addresses: []string{"192.0.2.1/24", "2001:db8::1/64"}, Skew: 0.25})
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.Renew(ctx, Renewal{Name: "Old-1", From: "0a", Current: "0a", Serial: "0b", CertPEM: "PEM2", Expires: at, PubKeyHash: "ph2"}); err != nil {
			t.Fatal(err)
		}
		c, err := s.ConnectorByName(ctx, "Old-1")
		if err != nil {
			t.Fatal(err)
		}
		if !c.LastSeen.Equal(at) || c.Version != "2.0" || strings.Join(c.Addresses, ",") != "192.0.2.1/24,2001:db8::1/64" || c.Skew != 0.25 ||
			c.Serial != "0b" || c.PrevSerial != "0a" || c.CertPubKeyHash != "ph2" || c.CertPEM != "PEM2" {
			t.Errorf("after heartbeat and renewal: %+v", c)
		}
		// The old group takes a rollout.
		if err := s.OrderUpgrade(ctx, "g", "Old-1", "2.1", at); err != nil {
			t.Fatal(err)
		}
		if h, err := s.ConnectorByCert(ctx, "0b"); err != nil || h.Upgrade.Target != "2.1" || !h.Upgrade.OrderedAt.Equal(at) {
			t.Errorf("holder after the order: %+v %v", h, err)
		}
	})
}

// TestCertificateHolders: the store finds a connector by its current and
// its previous certificate until the previous is forgotten, a renewal
// from a stale serial conflicts, and a cached holder never outlives a
// change of state.
func TestCertificateHolders(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s, err := Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.db.Exec(s.q(`INSERT INTO connectors (name, key_id, key_name, group_name, signing_ca, fingerprint, pubkey_hash, nonce, serial, cert_pem, cert_expires, enrolled_at, state)
			VALUES ('A-1', 'k', 'A', 'g', 'Connector', 'mac=x', 'ph', 'n', '0a', 'PEM', 1, 1, 'active')`)); err != nil {
			t.Fatal(err)
		}
		h, err := s.ConnectorByCert(ctx, "0a")
		if err != nil || h.Name != "A-1" || h.Previous || h.Renewing || h.State != ConnectorActive {
			t.Fatalf("by current serial: %+v %v", h, err)
		}
		if err := s.Renew(ctx, Renewal{Name: "A-1", From: "0a", Current: "0a", Serial: "0b", CertPEM: "P2", PubKeyHash: "h2"}); err != nil {
			t.Fatal(err)
		}
		if h, err := s.ConnectorByCert(ctx, "0a"); err != nil || !h.Previous || !h.Renewing {
			t.Fatalf("by previous serial: %+v %v", h, err)
		}
		if h, err := s.ConnectorByCert(ctx, "0b"); err != nil || h.Previous || !h.Renewing {
			t.Fatalf("by new serial: %+v %v", h, err)
		}
		// A retry from the previous certificate replaces the certificate
		// the connector never received and keeps the previous.
		if err := s.Renew(ctx, Renewal{Name: "A-1", From: "0a", Current: "0b", Serial: "0c", CertPEM: "P3", PubKeyHash: "h3"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ConnectorByCert(ctx, "0b"); err != ErrNotFound {
			t.Errorf("the certificate never received: %v, want ErrNotFound", err)
		}
		if err := s.Renew(ctx, Renewal{Name: "A-1", From: "0a", Current: "0b", Serial: "0d"}); err != ErrConflict {
			t.Errorf("renewal of a serial no longer current: %v, want ErrConflict", err)
		}
		if err := s.ForgetPrevious(ctx, "A-1", "0c"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ConnectorByCert(ctx, "0a"); err != ErrNotFound {
			t.Errorf("previous after ForgetPrevious: %v", err)
		}
		if err := s.SetConnectorState(ctx, "A-1", ConnectorRevoked, "x"); err != nil {
			t.Fatal(err)
		}
		if h, err := s.ConnectorByCert(ctx, "0c"); err != nil || h.State != ConnectorRevoked {
			t.Errorf("after revocation: %+v %v", h, err)
		}
		if err := s.Renew(ctx, Renewal{Name: "A-1", From: "0c", Current: "0c", Serial: "0e"}); err != ErrConflict {
			t.Errorf("renewal of a revoked connector: %v, want ErrConflict", err)
		}
	})
}

// TestHeartbeatsAreBatched: heartbeats are visible at once through the
// store, reach the database on Flush (or Close), and only the latest of a
// connector is written.
func TestHeartbeatsAreBatched(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "x.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(`INSERT INTO connectors (name, key_id, key_name, group_name, signing_ca, fingerprint, pubkey_hash, nonce, serial, cert_pem, cert_expires, enrolled_at, state)
		VALUES ('A-1', 'k', 'A', 'g', 'Connector', 'mac=x', 'ph', 'n', '0a', 'PEM', 1, 1, 'active')`); err != nil {
		t.Fatal(err)
	}
	t0 := time.UnixMilli(1800000000000).UTC()
	s.Heartbeat("A-1", Beat{At: t0, Version: "1"})
	s.Heartbeat("A-1", Beat{At: t0.Add(time.Second), Version: "2"})
	c, _ := s.ConnectorByName(ctx, "A-1")
	if !c.LastSeen.Equal(t0.Add(time.Second)) || c.Version != "2" {
		t.Errorf("read before the flush: %s %q, want the latest heartbeat", c.LastSeen, c.Version)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, _ = s.ConnectorByName(ctx, "A-1")
	if !c.LastSeen.Equal(t0.Add(time.Second)) || c.Version != "2" {
		t.Errorf("after Close and Open: %s %q", c.LastSeen, c.Version)
	}
}
