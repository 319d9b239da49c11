package store

import (
	"context"
	"os"
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

// TestSQLitePathIsEscaped: '?', '#' and '%' in a directory name are part
// of the path, not of the SQLite URI's query or fragment.
func TestSQLitePathIsEscaped(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "we?ird#dir%41 x")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, dsn := range []string{filepath.Join(dir, "a.db"), "sqlite:" + filepath.Join(dir, "b.sqlite")} {
		s, err := Open(context.Background(), dsn)
		if err != nil {
			t.Fatalf("%s: %v", dsn, err)
		}
		s.Close()
	}
	for _, f := range []string{"a.db", "b.sqlite"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("database not where asked: %v", err)
		}
	}
}

func TestCheckDatabase(t *testing.T) {
	for _, ok := range []string{"postgres://u@db/outpost", "postgresql://db/x?sslmode=disable", "sqlite:/var/lib/outpost/x", "/var/lib/outpost/outpost.db", "rel.db"} {
		if err := CheckDatabase(ok); err != nil {
			t.Errorf("CheckDatabase(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"not a url", "mysql://db/x", "postgres//db", "sqlite:", "/var/lib/outpost/db", "http://x.db"} {
		if err := CheckDatabase(bad); err == nil {
			t.Errorf("CheckDatabase(%q) accepted it", bad)
		}
	}
}
