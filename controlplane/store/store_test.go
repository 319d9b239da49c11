package store

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func TestRebindAndRedact(t *testing.T) {
	pg := &Store{postgres: true}
	if got := pg.q("SELECT a FROM t WHERE x = ? AND y = ?"); got != "SELECT a FROM t WHERE x = $1 AND y = $2" {
		t.Errorf("rebind: %q", got)
	}
	if got := redactDSN("postgres://outpost:s3cret@db:5432/outpost"); strings.Contains(got, "s3cret") {
		t.Errorf("redactDSN leaks the password: %q", got)
	}
	_, err := Open(context.Background(), "postgres://outpost:s3cret@127.0.0.1:1/outpost?connect_timeout=1")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Open error %v: want a failure without the password", err)
	}
}

func TestSQLiteSettings(t *testing.T) {
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, err := s.InitSetting(context.Background(), "ca_pin", "a"); v != "a" || err != nil {
		t.Fatalf("InitSetting: %q %v", v, err)
	}
	if v, err := s.InitSetting(context.Background(), "ca_pin", "b"); v != "a" || err != nil {
		t.Fatalf("InitSetting kept %q (%v), want the first value", v, err)
	}
	var mode string
	if err := s.db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode %q %v, want wal", mode, err)
	}
}
