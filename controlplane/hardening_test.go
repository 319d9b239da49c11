package controlplane_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/controlplane"
	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/cpclient"
	"github.com/outpost-appliance/outpost/provkey"
)

// mtls is an HTTP client presenting the enrolled chain (leaf, signing CA).
func (e *env) mtls(chainPEM string, key crypto.Signer) *http.Client {
	e.t.Helper()
	var chain [][]byte
	rest := []byte(chainPEM)
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		chain = append(chain, b.Bytes)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(chainPEM[strings.LastIndex(chainPEM, "-----BEGIN"):]))
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool,
		Certificates: []tls.Certificate{{Certificate: chain[:2], PrivateKey: key}}}}}
	e.t.Cleanup(c.CloseIdleConnections)
	return c
}

func (e *env) heartbeat(c *http.Client, fingerprint, version string) result {
	e.t.Helper()
	b, _ := json.Marshal(cpapi.HeartbeatRequest{Fingerprint: fingerprint, Version: version, Uptime: 42})
	resp, err := c.Post(e.url+cpapi.PathHeartbeat, "application/json", bytes.NewReader(b))
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out result
	json.NewDecoder(resp.Body).Decode(&out)
	out.Status = resp.StatusCode
	return out
}

// TestWrongSecretIsGeneric: a wrong secret for a known key id gets the same
// answer as an unknown id, naming neither the key nor a regeneration that
// never happened; the detail is in the server log only.
func TestWrongSecretIsGeneric(t *testing.T) {
	e := newEnv(t, "")
	text := e.key("Melbourne", 5, "")
	pk, _ := provkey.Parse(text)
	wrong, _ := pk.WithSecret(nil)
	r := e.enroll(wrong.Reveal(), csrFor(t, newSigner(t)), fp(1), "n1")
	if r.Status != 401 || r.Error != "invalid_key" {
		t.Fatalf("wrong secret: %+v", r)
	}
	for _, leak := range []string{"Melbourne", pk.ID.String(), "has been regenerated"} {
		if strings.Contains(r.Message, leak) {
			t.Errorf("answer to an unauthenticated caller contains %q: %s", leak, r.Message)
		}
	}
	other, _ := provkey.Generate(pk.Host, pk.Pin, nil)
	u := e.enroll(other.Reveal(), csrFor(t, newSigner(t)), fp(2), "n2")
	if u.Status != r.Status || u.Error != r.Error || u.Message != r.Message {
		t.Errorf("unknown key id answered %+v, wrong secret %+v: they must be the same", u, r)
	}
	log := e.logBuf.String()
	if !strings.Contains(log, "wrong secret for key Melbourne") || !strings.Contains(log, "unknown key id") {
		t.Errorf("the server log lacks the refusal details:\n%.2000s", log)
	}
}

// TestReportedTextIsValidated: what an enrolled connector reports ends up
// in admins' terminals, so escape sequences, CR and LF are refused with a
// message naming the field, at enrollment and in heartbeats.
func TestReportedTextIsValidated(t *testing.T) {
	e := newEnv(t, "")
	text := e.key("Hobart", 5, "")
	for _, tc := range []struct{ name, fp, nonce, field string }{
		{"ESC in fingerprint", "mac=00:50:56:00:00:01;uuid=\x1b[2J\x1b]0;pwned\x07", "n", "fingerprint"},
		{"CR LF in fingerprint", "mac=00:50:56:00:00:01\r\nuuid=x", "n", "fingerprint"},
		{"C1 in fingerprint", "mac=00:50:56:00:00:01;uuid=\u009b31m", "n", "fingerprint"},
		{"not key=value", "just text", "n", "fingerprint"},
		{"ESC in nonce", fp(1), "n\x1b[0m", "nonce"},
	} {
		r := e.enroll(text, csrFor(t, newSigner(t)), tc.fp, tc.nonce)
		if r.Status != 400 || r.Error != "bad_request" || !strings.Contains(r.Message, tc.field) {
			t.Errorf("%s: %+v, want 400 bad_request naming %s", tc.name, r, tc.field)
		}
	}
	if k := e.keyInfo("Hobart"); k.UseCount != 0 {
		t.Fatalf("use count %d after refused enrollments", k.UseCount)
	}
	signer := newSigner(t)
	orig := "mac=00:50:56:00:00:01;uuid=4210-aa"
	r := e.enroll(text, csrFor(t, signer), orig, "n")
	if r.Status != 200 {
		t.Fatal(r)
	}
	mtls := e.mtls(r.Certificate, signer)
	for _, tc := range []struct{ name, fp, version, field string }{
		{"ESC in version", orig, "1.0\x1b[31m", "version"},
		{"LF in version", orig, "1.0\nforged log line", "version"},
		{"ESC in fingerprint", orig + "\x1b[2J", "1.0", "fingerprint"},
	} {
		r := e.heartbeat(mtls, tc.fp, tc.version)
		if r.Status != 400 || r.Error != "bad_request" || !strings.Contains(r.Message, tc.field) {
			t.Errorf("heartbeat %s: %+v, want 400 bad_request naming %s", tc.name, r, tc.field)
		}
	}
	c := map[string]any{}
	e.adminHTTP("GET", cpapi.Path(cpapi.PathConnector, r.Name), nil, &c)
	if c["version"] != "" || c["state"] != "active" {
		t.Fatalf("connector after refused heartbeats: %v", c)
	}
	if r := e.heartbeat(mtls, orig, "1.4.2+g1a2b3c"); r.Status != 200 {
		t.Fatalf("valid heartbeat: %+v", r)
	}
}

func TestCheckFingerprint(t *testing.T) {
	for _, ok := range []string{"mac=00:50:56:00:00:01;uuid=4c4c4544-0000", "mac=00:50:56:00:00:01;uuid=unknown", "a=b"} {
		if err := cpapi.CheckFingerprint(ok); err != nil {
			t.Errorf("CheckFingerprint(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "mac", "mac=", "=x", "Mac=1", "mac=1;mac=2", "mac=1;", "mac=a b", "mac=\x00", "mac=é", strings.Repeat("a=b;", 300)} {
		if err := cpapi.CheckFingerprint(bad); err == nil {
			t.Errorf("CheckFingerprint(%q) accepted it", bad)
		}
	}
}

// TestSmallAPIFixes: 405 with Allow for a known path and a wrong method;
// JSON errors in the API's words, not Go's; deleting a key that enrolled
// connectors needs force.
func TestSmallAPIFixes(t *testing.T) {
	e := newEnv(t, "")
	req, _ := http.NewRequest("DELETE", e.url+cpapi.PathHealthz, nil)
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET" {
		t.Errorf("DELETE /healthz: %d Allow %q, want 405 Allow GET", resp.StatusCode, resp.Header.Get("Allow"))
	}
	var out result
	if st := e.adminHTTP("PUT", cpapi.Path(cpapi.PathKey, "x"), nil, &out); st != 405 || out.Error != cpapi.CodeMethodNotAllowed {
		t.Errorf("PUT key: %d %+v", st, out)
	}
	if st := e.adminHTTP("GET", "/api/v1/nothing", nil, &out); st != 404 {
		t.Errorf("GET unknown path: %d %+v", st, out)
	}

	for _, tc := range []struct{ path, body, want string }{
		{cpapi.PathKeys, `{"name":"x","group":"g","max_uses":"two"}`, `field "max_uses" must be a whole number, not string`},
		{cpapi.PathEnroll, `{"key": 1}`, `field "key" must be a string, not number`},
		{cpapi.PathEnroll, `[1]`, `must be an object, not array`},
		{cpapi.PathEnroll, `{"key": "x",`, "not valid JSON"},
	} {
		req, _ := http.NewRequest("POST", e.url+tc.path, strings.NewReader(tc.body))
		req.Header.Set("Authorization", "Bearer "+e.token)
		resp, err := e.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var r result
		json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(r.Message, tc.want) || strings.Contains(r.Message, "cpapi.") || strings.Contains(r.Message, "controlplane.") || strings.Contains(r.Message, "int64") {
			t.Errorf("POST %s %s: %d %q, want 400 containing %q and no Go type names", tc.path, tc.body, resp.StatusCode, r.Message, tc.want)
		}
	}

	text := e.key("Broome", 2, "")
	if r := e.enroll(text, csrFor(t, newSigner(t)), fp(1), "n"); r.Status != 200 {
		t.Fatal(r)
	}
	ctx := t.Context()
	_, err = e.admin.DeleteKey(ctx, "Broome", false)
	if !cpapi.IsCode(err, cpapi.CodeConflict) || !strings.Contains(err.Error(), "1 connectors") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("delete of a key with a connector: %v", err)
	}
	if _, err := e.admin.DeleteKey(ctx, "Broome", true); err != nil {
		t.Fatalf("forced delete: %v", err)
	}
	e.key("Empty", 1, "")
	if _, err := e.admin.DeleteKey(ctx, "Empty", false); err != nil {
		t.Fatalf("delete of an unused key: %v", err)
	}
}

// open starts a control plane on dir without serving, for checks of what
// Open accepts and writes.
func open(t *testing.T, dir string) (*controlplane.Server, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv, err := controlplane.Open(context.Background(), controlplane.Config{DataDir: dir}, ln.Addr())
	if err == nil {
		t.Cleanup(func() { srv.Close() })
	}
	return srv, err
}

// TestFileModes: the database is private whatever the umask; the server
// refuses secrets (and directories holding them) that group or others can
// read, naming the file and the chmod; an empty secret left by a crash is
// reported, not used.
func TestFileModes(t *testing.T) {
	old := syscall.Umask(0)
	dir := filepath.Join(t.TempDir(), "data")
	os.Mkdir(dir, 0o755)
	srv, err := open(t, dir)
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	// While open, SQLite keeps its -wal and -shm beside the database.
	for _, f := range []string{"outpost.db", "outpost.db-wal", "outpost.db-shm", "admin.token", "secrets.key", "admin.conf", "pki/root-ca.key", "pki/signing-ca/Connector.key"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Errorf("%s: %v", f, err)
		} else if st.Mode().Perm() != 0o600 {
			t.Errorf("%s is mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	srv.Close()
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Errorf("data directory is mode %v, want 0700", st.Mode().Perm())
	}
	if srv, err := open(t, dir); err != nil {
		t.Fatalf("restart with private files: %v", err)
	} else {
		srv.Close()
	}
	for _, tc := range []struct {
		path string
		mode os.FileMode
		fix  string
	}{
		{"admin.token", 0o644, "chmod 600 "},
		{"secrets.key", 0o640, "chmod 600 "},
		{"pki/root-ca.key", 0o644, "chmod 600 "},
		{"admin.conf", 0o604, "chmod 600 "},
		{"", 0o755, "chmod 700 "},
		{"pki", 0o750, "chmod 700 "},
	} {
		p := filepath.Join(dir, tc.path)
		st, _ := os.Stat(p)
		os.Chmod(p, tc.mode)
		_, err := open(t, dir)
		os.Chmod(p, st.Mode().Perm())
		if err == nil || !strings.Contains(err.Error(), tc.fix+p) {
			t.Errorf("%s at %v: %v, want a refusal naming %q", p, tc.mode, err, tc.fix+p)
		}
	}

	empty := t.TempDir()
	os.Chmod(empty, 0o700)
	os.WriteFile(filepath.Join(empty, "admin.token"), nil, 0o600)
	if _, err := open(t, empty); err == nil || !strings.Contains(err.Error(), "admin.token is empty") {
		t.Errorf("empty admin.token: %v", err)
	}
	os.Remove(filepath.Join(empty, "admin.token"))
	os.WriteFile(filepath.Join(empty, "secrets.key"), []byte("short"), 0o600)
	if _, err := open(t, empty); err == nil || !strings.Contains(err.Error(), "secrets.key is damaged") {
		t.Errorf("partial secrets.key: %v", err)
	}
}

// TestRateLimitAcrossServers: two servers sharing PostgreSQL share the
// failure counts, so 10 failures spread over both reach the limit.
func TestRateLimitAcrossServers(t *testing.T) {
	dsn := pgShared(t)
	dir := t.TempDir()
	a := newEnvDir(t, dir, dsn, "cp.example.com:443")
	b := newEnvDir(t, dir, dsn, "cp.example.com:443")
	text := a.key("Shared", 5, "")
	pk, _ := provkey.Parse(text)
	wrong, _ := pk.WithSecret(nil)
	for i := range 10 {
		e := a
		if i%2 == 1 {
			e = b
		}
		if r := e.enroll(wrong.Reveal(), csrFor(t, newSigner(t)), fp(i), "x"); r.Error != "invalid_key" {
			t.Fatalf("attempt %d: %+v", i, r)
		}
	}
	for _, e := range []*env{a, b} {
		if r := e.enroll(wrong.Reveal(), csrFor(t, newSigner(t)), fp(1), "x"); r.Status != 429 {
			t.Errorf("after 10 failures over two servers: %+v", r)
		}
	}
	if r := b.enroll(text, csrFor(t, newSigner(t)), fp(1), "x"); r.Status != 200 {
		t.Errorf("valid key: %+v", r)
	}
}

// TestWrongTokenLogIsThrottled: a flood of wrong admin tokens from one
// address writes one WARN line per minute, then one counting the rest.
func TestWrongTokenLogIsThrottled(t *testing.T) {
	e := newEnv(t, "")
	send := func() {
		req, _ := http.NewRequest("GET", e.url+cpapi.PathGroups, nil)
		req.Header.Set("Authorization", "Bearer wrong")
		resp, err := e.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("wrong token: %d", resp.StatusCode)
		}
	}
	lines := func() []string {
		var out []string
		for _, l := range strings.Split(e.logBuf.String(), "\n") {
			if strings.Contains(l, "wrong token") {
				out = append(out, l)
			}
		}
		return out
	}
	for range 1000 {
		send()
	}
	if n := len(lines()); n != 1 {
		t.Fatalf("%d log lines for 1000 wrong tokens in a minute, want 1", n)
	}
	e.clock.Advance(time.Minute)
	send()
	ls := lines()
	if len(ls) != 2 || !strings.Contains(ls[1], `"suppressed":999`) {
		t.Fatalf("after a minute: %q, want a second line counting 999 suppressed", ls)
	}
}

// TestRestartWithAnotherHostname: keys naming the old host are counted in
// a warning at start; admin.conf follows the server's URL until an admin
// edits it, and then keeps the edit.
func TestRestartWithAnotherHostname(t *testing.T) {
	dir := t.TempDir()
	start := func(host string) (*controlplane.Server, *syncBuffer) {
		t.Helper()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		buf := &syncBuffer{}
		srv, err := controlplane.Open(context.Background(), controlplane.Config{DataDir: dir, Hostnames: []string{host}, Log: slog.New(slog.NewTextHandler(buf, nil))}, ln.Addr())
		if err != nil {
			t.Fatal(err)
		}
		return srv, buf
	}
	conf := filepath.Join(dir, controlplane.AdminConfFile)
	server := func() string {
		cfg, err := cpclient.LoadConfig(conf)
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Server
	}
	srv, _ := start("a.example.com:443")
	ctx := context.Background()
	srv.Service.CreateGroup(ctx, cpapi.GroupSpec{Name: "g"})
	for _, n := range []string{"K1", "K2"} {
		if _, err := srv.Service.CreateKey(ctx, cpapi.KeySpec{Name: n, Group: "g", MaxUses: 1}); err != nil {
			t.Fatal(err)
		}
	}
	srv.Close()
	srv, log := start("b.example.com:443")
	srv.Close()
	if !strings.Contains(log.String(), "2 active keys name the control plane a.example.com:443") {
		t.Errorf("no warning about keys naming the old host:\n%s", log)
	}
	if got := server(); got != "https://b.example.com:443" {
		t.Errorf("untouched admin.conf names %s, want the new URL", got)
	}
	cfg, _ := cpclient.LoadConfig(conf)
	cfg.Server = "https://10.0.0.5:8443"
	cpclient.WriteConfig(conf, cfg)
	srv, log = start("c.example.com:443")
	srv.Close()
	if got := server(); got != "https://10.0.0.5:8443" {
		t.Errorf("admin.conf edited by the admin was overwritten with %s", got)
	}
	if !strings.Contains(log.String(), "keeping the admin's value") {
		t.Errorf("no log line about the kept edit:\n%s", log)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	for _, bad := range []string{"bad host!", "cp.example.com:99999", "under_score.example.com"} {
		if _, err := controlplane.Open(ctx, controlplane.Config{DataDir: dir, Hostnames: []string{bad}}, ln.Addr()); err == nil || !strings.Contains(err.Error(), "--hostname") {
			t.Errorf("--hostname %q: %v", bad, err)
		}
	}
}
