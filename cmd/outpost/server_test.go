package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/cpclient"
	"github.com/outpost-appliance/outpost/internal/pgtest"
	"github.com/outpost-appliance/outpost/pki"
)

// binary is the outpost command TestMain built for the subprocess tests.
func binary(t *testing.T) string {
	t.Helper()
	return outpostBin
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is an `outpost server` subprocess.
type proc struct {
	cmd  *exec.Cmd
	url  string
	log  *bytes.Buffer
	done chan error
}

func startServer(t *testing.T, dir, database string, extra ...string) *proc {
	t.Helper()
	port := freePort(t)
	args := append([]string{"server", "--data", dir, "--listen", fmt.Sprintf("127.0.0.1:%d", port)}, extra...)
	if database != "" {
		args = append(args, "--database", database)
	}
	p := &proc{cmd: exec.Command(binary(t), args...), url: fmt.Sprintf("https://127.0.0.1:%d", port), log: &bytes.Buffer{}, done: make(chan error, 1)}
	p.cmd.Stderr = &lockedWriter{w: p.log}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { p.cmd.Process.Kill(); <-p.done })
	for i := 0; ; i++ {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		resp, err := c.Get(p.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		if i > 100 {
			t.Fatalf("server did not become healthy: %v\n%s", err, p.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// cli runs the outpost CLI in-process against dir's admin.conf.
func cli(t *testing.T, dir string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	args = append(args, "--config", filepath.Join(dir, "admin.conf"))
	err = run(context.Background(), args, strings.NewReader(""), &o, &e)
	return o.String(), e.String(), err
}

func mustCLI(t *testing.T, dir string, args ...string) string {
	t.Helper()
	o, e, err := cli(t, dir, args...)
	if err != nil {
		t.Fatalf("outpost %s: %v\n%s", strings.Join(args, " "), err, e)
	}
	return o
}

type enroller struct {
	c   *http.Client
	url string
}

func newEnroller(t *testing.T, dir, url string) *enroller {
	cfg, err := cpclient.LoadConfig(filepath.Join(dir, "admin.conf"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(cfg.CA))
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 128}
	t.Cleanup(tr.CloseIdleConnections)
	return &enroller{c: &http.Client{Transport: tr, Timeout: 10 * time.Second}, url: url}
}

func csr(t *testing.T) string {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	b, err := pki.MakeCSR(k, "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (e *enroller) enroll(key, csr string, i int) (int, string, error) {
	b, _ := json.Marshal(cpapi.EnrollRequest{Key: key, CSR: csr, Fingerprint: fmt.Sprintf("mac=00:50:56:00:%02x:%02x", i/256%256, i%256), Nonce: fmt.Sprint(i)})
	resp, err := e.c.Post(e.url+cpapi.PathEnroll, "application/json", bytes.NewReader(b))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var r struct{ Name, Error string }
	json.NewDecoder(resp.Body).Decode(&r)
	return resp.StatusCode, r.Name + r.Error, nil
}

func keyInfo(t *testing.T, dir, name string) cpapi.KeyInfo {
	var k cpapi.KeyInfo
	if err := json.Unmarshal([]byte(mustCLI(t, dir, "keys", "show", name, "--json")), &k); err != nil {
		t.Fatal(err)
	}
	return k
}

func connectorNames(t *testing.T, dir string) map[string]bool {
	var cs []struct{ Name string }
	if err := json.Unmarshal([]byte(mustCLI(t, dir, "connectors", "list", "--json")), &cs); err != nil {
		t.Fatal(err)
	}
	m := map[string]bool{}
	for _, c := range cs {
		m[c.Name] = true
	}
	return m
}

func TestServerCLIEndToEnd(t *testing.T) {
	dir := t.TempDir()
	p := startServer(t, dir, "", "--hostname", "localhost")
	st, err := os.Stat(filepath.Join(dir, "admin.conf"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("admin.conf: %v %v", st, err)
	}
	mustCLI(t, dir, "groups", "create", "melb", "--location", "Melbourne DC", "--window-day", "sat", "--window-hour", "1")
	if out := mustCLI(t, dir, "groups", "show", "melb"); !strings.Contains(out, "sat 01:00–05:00 UTC") {
		t.Fatalf("groups show:\n%s", out)
	}
	out, errOut, err := cli(t, dir, "keys", "create", "--name", "Melbourne", "--group", "melb", "--max-uses", "1", "--expires-in", "36h")
	if err != nil {
		t.Fatal(err, errOut)
	}
	key := strings.TrimSpace(out)
	if strings.Count(out, "\n") != 1 || !strings.HasPrefix(key, "1|localhost:") || !strings.Contains(errOut, "Maximum uses:        1") {
		t.Fatalf("keys create: stdout %q stderr %q", out, errOut)
	}
	if out := mustCLI(t, dir, "keys", "reveal", "Melbourne"); strings.TrimSpace(out) != key {
		t.Fatalf("reveal %q, want the created key", out)
	}
	kf := filepath.Join(t.TempDir(), "k")
	mustCLI(t, dir, "keys", "download", "Melbourne", "-o", kf)
	if b, err := os.ReadFile(kf); err != nil || strings.TrimSpace(string(b)) != key {
		t.Fatalf("download: %q %v", b, err)
	}
	if st, _ := os.Stat(kf); st.Mode().Perm() != 0o600 {
		t.Fatalf("downloaded key mode %v", st.Mode())
	}
	// Our own output checks clean: no warning for the downloaded file.
	var kout, kerr bytes.Buffer
	if err := run(context.Background(), []string{"key", "check", kf}, strings.NewReader(""), &kout, &kerr); err != nil ||
		!strings.HasPrefix(kout.String(), "valid: key ") || strings.Contains(kout.String(), "warning") {
		t.Errorf("key check of the downloaded file: %v\n%s%s", err, kout.String(), kerr.String())
	}
	e := newEnroller(t, dir, p.url)
	if code, name, err := e.enroll(key, csr(t), 1); code != 200 || name != "Melbourne-1" {
		t.Fatalf("enroll: %d %s %v", code, name, err)
	}
	out, errOut, err = cli(t, dir, "keys", "reveal", "Melbourne")
	if err == nil || out != "" || !strings.Contains(errOut, "warning: Melbourne has been used 1 of 1 times") {
		t.Fatalf("reveal of used-up key: err %v stdout %q stderr %q", err, out, errOut)
	}
	list := mustCLI(t, dir, "keys", "list")
	for _, want := range []string{"NAME", "SIGNING CERTIFICATE", "MAX USES", "UTILIZATION", "Melbourne", "Connector", "exhausted", "redacted"} {
		if !strings.Contains(list, want) {
			t.Errorf("keys list lacks %q:\n%s", want, list)
		}
	}
	if strings.Contains(list, key[20:]) {
		t.Fatal("keys list shows the key")
	}
	if out := mustCLI(t, dir, "keys", "list", "--state", "active"); strings.Contains(out, "Melbourne") {
		t.Fatalf("--state active lists an exhausted key:\n%s", out)
	}
	if _, errOut, err := cli(t, dir, "keys", "edit", "Melbourne", "--max-uses", "0"); err == nil || !strings.Contains(errOut+err.Error(), "at least 1") {
		t.Fatalf("edit below 1: %v %s", err, errOut)
	}
	if out := mustCLI(t, dir, "connectors", "list"); !strings.Contains(out, "Melbourne-1") || !strings.Contains(out, "never seen") {
		t.Fatalf("connectors list:\n%s", out)
	}
	_, errOut, _ = cli(t, dir, "connectors", "revoke", "Melbourne-1")
	if !strings.Contains(errOut, "regenerated the keys of group melb") {
		t.Fatalf("connectors revoke: %s", errOut)
	}
	if _, _, err := cli(t, dir, "groups", "delete", "melb"); err == nil {
		t.Fatal("deleting a group with keys succeeded without --force")
	}
	mustCLI(t, dir, "groups", "delete", "melb", "--force")
	// Wrong token: a clear refusal.
	cfg, _ := cpclient.LoadConfig(filepath.Join(dir, "admin.conf"))
	cfg.Token = "wrong"
	bad := filepath.Join(t.TempDir(), "bad.conf")
	cpclient.WriteConfig(bad, cfg)
	var o, eb bytes.Buffer
	err = run(context.Background(), []string{"groups", "list", "--config", bad}, nil, &o, &eb)
	if err == nil || !strings.Contains(err.Error(), "admin token is wrong") {
		t.Fatalf("wrong token: %v", err)
	}
	// Graceful shutdown on SIGTERM.
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Fatalf("server exit after SIGTERM: %v\n%s", err, p.log)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server did not stop on SIGTERM")
	}
	if strings.Contains(p.log.String(), key[20:]) {
		t.Fatal("server log contains the key")
	}
}

// load runs enrollments with workers until stop is closed, returning the
// number of certificates the clients received.
func load(t *testing.T, es []*enroller, key string, workers int, stop chan struct{}) *atomic.Int64 {
	var got atomic.Int64
	var n atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := es[w%len(es)]
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := int(n.Add(1))
				if code, _, err := e.enroll(key, csr(t), i); err == nil && code == 200 {
					got.Add(1)
				} else if err != nil {
					select {
					case <-stop:
						return
					default:
						time.Sleep(5 * time.Millisecond)
					}
				}
			}
		}()
	}
	t.Cleanup(wg.Wait)
	return &got
}

func TestSIGKILLMidLoadKeepsCountEqualToCertificates(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			dsn := ""
			if db == "postgres" {
				dsn = pgtest.Shared(t).NewDatabase(t)
			}
			dir := t.TempDir()
			p := startServer(t, dir, dsn)
			mustCLI(t, dir, "groups", "create", "g")
			key := strings.TrimSpace(mustCLI(t, dir, "keys", "create", "--name", "Load", "--group", "g", "--max-uses", "100000"))
			e := newEnroller(t, dir, p.url)
			stop := make(chan struct{})
			got := load(t, []*enroller{e}, key, 32, stop)
			time.Sleep(700 * time.Millisecond)
			p.cmd.Process.Kill() // SIGKILL
			<-p.done
			p.done <- nil
			close(stop)
			received := got.Load()
			p2 := startServer(t, dir, dsn)
			_ = p2
			// admin.conf now points at the restarted server.
			k := keyInfo(t, dir, "Load")
			issued := int64(len(connectorNames(t, dir)))
			if k.UseCount != issued {
				t.Fatalf("after SIGKILL: use count %d, certificates issued %d", k.UseCount, issued)
			}
			if received == 0 || received > issued {
				t.Fatalf("clients received %d certificates, %d recorded", received, issued)
			}
			t.Logf("%s: %d enrollments before SIGKILL, %d answers received", db, issued, received)
		})
	}
}

func TestTwoServerProcessesShareOnePostgres(t *testing.T) {
	dsn := pgtest.Shared(t).NewDatabase(t)
	dir := t.TempDir()
	a := startServer(t, dir, dsn, "--hostname", "cp.example.com:443")
	b := startServer(t, dir, dsn, "--hostname", "cp.example.com:443")
	// admin.conf names cp.example.com; point the CLI at server a.
	cfg, _ := cpclient.LoadConfig(filepath.Join(dir, "admin.conf"))
	cfg.Server = a.url
	cpclient.WriteConfig(filepath.Join(dir, "admin.conf"), cfg)
	mustCLI(t, dir, "groups", "create", "g")
	key := strings.TrimSpace(mustCLI(t, dir, "keys", "create", "--name", "Pair", "--group", "g", "--max-uses", "50"))
	es := []*enroller{newEnroller(t, dir, a.url), newEnroller(t, dir, b.url)}
	const n = 300
	csrs := make([]string, n)
	for i := range csrs {
		csrs[i] = csr(t)
	}
	var ok atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, what, err := es[i%2].enroll(key, csrs[i], i)
			switch {
			case err != nil:
				t.Error(err)
			case code == 200:
				ok.Add(1)
			case what != "key_exhausted":
				t.Errorf("enrollment %d: %d %s", i, code, what)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 50 {
		t.Fatalf("%d successes across two processes, want 50", ok.Load())
	}
	if k := keyInfo(t, dir, "Pair"); k.UseCount != 50 {
		t.Fatalf("use count %d, want 50", k.UseCount)
	}
	names := connectorNames(t, dir)
	for i := 1; i <= 50; i++ {
		if !names[fmt.Sprintf("Pair-%d", i)] {
			t.Fatalf("missing Pair-%d", i)
		}
	}
}
