package controlplane_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/controlplane"
	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/cpclient"
	"github.com/outpost-appliance/outpost/internal/pgtest"
	"github.com/outpost-appliance/outpost/pki"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(benchClientEnv); path != "" { // BenchmarkHeartbeat's connectors
		if err := heartbeatClient(path); err != nil {
			fmt.Fprintln(os.Stderr, "heartbeat client:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	pgtest.StopShared()
	os.Exit(code)
}

// clock is an injected, settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	t      testing.TB
	dir    string
	srv    *controlplane.Server
	url    string
	admin  *cpclient.Client
	token  string
	clock  *clock
	http   *http.Client
	logBuf *syncBuffer
	stop   func() // stops the server (once)
	tune   func(*controlplane.Config)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// backends runs f against SQLite in a temp dir and a fresh PostgreSQL database.
func backends(t *testing.T, f func(t *testing.T, dsn string)) {
	t.Run("sqlite", func(t *testing.T) { f(t, "") })
	t.Run("postgres", func(t *testing.T) { f(t, pgtest.Shared(t).NewDatabase(t)) })
}

func newEnv(t testing.TB, dsn string) *env {
	t.Helper()
	return newEnvDir(t, t.TempDir(), dsn)
}

func newEnvDir(t testing.TB, dir, dsn string, hostnames ...string) *env {
	t.Helper()
	return newEnvTuned(t, dir, dsn, nil, hostnames...)
}

// newEnvTuned is newEnvDir with tune changing the server's Config.
func newEnvTuned(t testing.TB, dir, dsn string, tune func(*controlplane.Config), hostnames ...string) *env {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, clock: &clock{t: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}, logBuf: &syncBuffer{}, tune: tune}
	log := slog.New(slog.NewJSONHandler(e.logBuf, nil))
	scfg := controlplane.Config{DataDir: dir, Database: dsn, Hostnames: hostnames, Log: log, Now: e.clock.Now}
	if tune != nil {
		tune(&scfg)
	}
	srv, err := controlplane.Open(context.Background(), scfg, ln.Addr())
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	e.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx, ln); close(done) }()
	var once sync.Once
	e.stop = func() { once.Do(func() { cancel(); <-done; srv.Close() }) }
	t.Cleanup(e.stop)
	cfg, err := cpclient.LoadConfig(filepath.Join(dir, controlplane.AdminConfFile))
	if err != nil {
		t.Fatal(err)
	}
	e.url = "https://" + ln.Addr().String()
	cfg.Server, e.token = e.url, cfg.Token
	if e.admin, err = cpclient.New(cfg); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(cfg.CA))
	e.http = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 512, MaxConnsPerHost: 0}}
	t.Cleanup(e.http.CloseIdleConnections)
	return e
}

// adminHTTP sends an admin request past the typed client, for checks of
// the wire itself (statuses, JSON names), and returns the status.
func (e *env) adminHTTP(method, path string, in, out any) int {
	e.t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.url+path, body)
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := e.http.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		e.t.Fatalf("%s %s: answer %d is not JSON: %v", method, path, resp.StatusCode, err)
	}
	return resp.StatusCode
}

// key makes a group (if needed) and a key, returning the key's text.
func (e *env) key(name string, maxUses int64, expiresIn string) string {
	e.t.Helper()
	e.admin.CreateGroup(context.Background(), cpapi.GroupSpec{Name: "g"})
	kt, err := e.admin.CreateKey(context.Background(), cpapi.KeySpec{Name: name, Group: "g", MaxUses: maxUses, ExpiresIn: expiresIn})
	if err != nil {
		e.t.Fatalf("create key %s: %v", name, err)
	}
	return kt.Text
}

func (e *env) keyInfo(name string) cpapi.KeyInfo {
	e.t.Helper()
	k, err := e.admin.Key(context.Background(), name)
	if err != nil {
		e.t.Fatalf("key %s: %v", name, err)
	}
	return k
}

// connectors lists the connectors as they are on the wire.
func (e *env) connectors() []map[string]any {
	e.t.Helper()
	var cs []map[string]any
	if st := e.adminHTTP("GET", cpapi.PathConnectors, nil, &cs); st != 200 {
		e.t.Fatalf("GET %s: %d", cpapi.PathConnectors, st)
	}
	return cs
}

func newSigner(t testing.TB) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func csrFor(t testing.TB, k crypto.Signer) string {
	b, err := pki.MakeCSR(k, "appliance", nil)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type result struct {
	Status int
	cpapi.EnrollResponse
	Error, Message string
}

// postRaw sends body to path and decodes the JSON answer.
func (e *env) postRaw(path string, body io.Reader) result {
	resp, err := e.http.Post(e.url+path, "application/json", body)
	if err != nil {
		e.t.Errorf("POST %s: %v", path, err)
		return result{}
	}
	defer resp.Body.Close()
	r := result{Status: resp.StatusCode}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &r); err != nil {
		e.t.Errorf("POST %s: answer %d is not JSON: %q", path, resp.StatusCode, b)
	}
	return r
}

func (e *env) enroll(keyText, csr, fingerprint, nonce string) result {
	b, _ := json.Marshal(cpapi.EnrollRequest{Key: keyText, CSR: csr, Fingerprint: fingerprint, Nonce: nonce})
	return e.postRaw(cpapi.PathEnroll, bytes.NewReader(b))
}

func fp(i int) string { return fmt.Sprintf("mac=00:50:56:00:00:%02x;uuid=4210-%d", i%256, i) }

func pgShared(t *testing.T) string { return pgtest.Shared(t).NewDatabase(t) }
