// Package pgtest starts a throwaway PostgreSQL server from Debian's
// packages for tests: data and unix socket in a temporary directory, TCP on
// a free loopback port, fsync off. It runs initdb as user postgres when the
// test runs as root (initdb refuses root).
package pgtest

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/outpost-appliance/outpost/internal/testtool"
)

// Server is a running PostgreSQL.
type Server struct {
	dir, bin string
	port     int
	asUser   []string
	n        atomic.Int64
	admin    *sql.DB
}

var (
	mu     sync.Mutex
	shared *Server
	err0   error
)

// Shared starts one server for the test binary (or skips: see Start) and
// returns it; call Stop from TestMain.
func Shared(t testing.TB) *Server {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if shared == nil && err0 == nil {
		shared, err0 = start()
	}
	if err0 != nil {
		if _, ok := err0.(missingError); ok {
			testtool.Missing(t, err0.Error())
		}
		t.Fatal(err0)
	}
	return shared
}

// StopShared stops the shared server if one was started.
func StopShared() {
	mu.Lock()
	defer mu.Unlock()
	if shared != nil {
		shared.Stop()
		shared = nil
	}
}

type missingError struct{ msg string }

func (e missingError) Error() string { return e.msg }

func findBin() (string, error) {
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(m) == 0 {
		return "", missingError{"PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); " + testtool.Install("initdb")}
	}
	sort.Strings(m)
	return filepath.Dir(m[len(m)-1]), nil
}

func start() (*Server, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "outpost-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root needs the postgres user to run initdb: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chmod(dir, 0o755); err != nil {
			return nil, err
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
		s.asUser = []string{"runuser", "-u", "postgres", "--"}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	data := filepath.Join(dir, "data")
	if out, err := s.run("initdb", "-D", data, "-A", "trust", "-U", "postgres", "-N", "-E", "UTF8"); err != nil {
		s.Stop()
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	opts := fmt.Sprintf("-k %s -p %d -h 127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300", dir, s.port)
	if out, err := s.run("pg_ctl", "start", "-w", "-D", data, "-l", filepath.Join(dir, "log"), "-o", opts); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		s.Stop()
		return nil, fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	s.admin, err = sql.Open("pgx", s.url("postgres"))
	if err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) run(tool string, args ...string) ([]byte, error) {
	argv := append(append([]string{}, s.asUser...), filepath.Join(s.bin, tool))
	argv = append(argv, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = s.dir
	return cmd.CombinedOutput()
}

func (s *Server) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// NewDatabase creates an empty database and returns its URL.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d", s.n.Add(1))
	if _, err := s.admin.ExecContext(context.Background(), "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	return s.url(name)
}

// Stop stops the server and removes its directory.
func (s *Server) Stop() {
	if s.admin != nil {
		s.admin.Close()
	}
	s.run("pg_ctl", "stop", "-m", "immediate", "-w", "-D", filepath.Join(s.dir, "data"))
	os.RemoveAll(s.dir)
}
