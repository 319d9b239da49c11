package main

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/cpclient"
)

// fakeServer answers admin requests with what answer returns for the path,
// and writes an admin.conf for it into a temp dir, returned.
func fakeServer(t *testing.T, answer func(r *http.Request) (int, any)) string {
	t.Helper()
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status, v := answer(r)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}))
	t.Cleanup(ts.Close)
	dir := t.TempDir()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw})
	if err := cpclient.WriteConfig(filepath.Join(dir, "admin.conf"), cpclient.Config{Server: ts.URL, Token: "t", CA: string(ca)}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestRemoteTextIsEscaped: a connector's fingerprint and version (and any
// other text from the server) cannot drive the admin's terminal.
func TestRemoteTextIsEscaped(t *testing.T) {
	evil := "\x1b]0;owned\x07\x1b[2J\rX\nY\u009b31m\u202e\x7f"
	c := cpapi.Connector{Name: "Melbourne-1" + evil, Group: "g" + evil, KeyName: "Melbourne", Fingerprint: "mac=1;uuid=" + evil,
		Version: "1.0" + evil, State: "blocked", StateReason: "because" + evil, Serial: "01"}
	k := cpapi.KeyInfo{Key: cpapi.Key{Name: "K" + evil, Group: "g" + evil, Host: "h" + evil, MaxUses: 1}, Redacted: "r" + evil}
	dir := fakeServer(t, func(r *http.Request) (int, any) {
		switch r.URL.Path {
		case cpapi.PathConnectors:
			return 200, []cpapi.Connector{c}
		case cpapi.Path(cpapi.PathConnector, "x"):
			return 200, c
		case cpapi.PathKeys:
			return 200, []cpapi.KeyInfo{k}
		case cpapi.Path(cpapi.PathKey, "x"):
			return 200, k
		case cpapi.PathGroups:
			return 200, []cpapi.Group{{Name: "g" + evil, Location: evil, WindowDay: 99}}
		}
		return 403, cpapi.Error{Code: "blocked", Message: "refused" + evil}
	})
	for _, args := range [][]string{
		{"connectors", "list"}, {"connectors", "show", "x"}, {"keys", "list"}, {"keys", "show", "x"},
		{"groups", "list"}, {"groups", "show", "nope"},
	} {
		o, e, err := cli(t, dir, args...)
		if err != nil {
			var b strings.Builder
			exitCode(err, &b)
			e += b.String()
		}
		for name, out := range map[string]string{"stdout": o, "stderr": e} {
			for _, r := range out {
				if r < 0x20 && r != '\n' && r != '\t' || r >= 0x7f && r < 0xa0 || r == 0x202e {
					t.Errorf("outpost %s: %s has the control character %q:\n%q", strings.Join(args, " "), name, r, out)
					break
				}
			}
		}
		if strings.Contains(o+e, "\nY") {
			t.Errorf("outpost %s: a remote LF starts a new line:\n%s%s", strings.Join(args, " "), o, e)
		}
		if !strings.Contains(o+e, `\x1b]0;owned\a`) {
			t.Errorf("outpost %s: the escaped text is not shown:\n%s%s", strings.Join(args, " "), o, e)
		}
	}
	// JSON stays exact (the encoder escapes control characters itself).
	o, _, err := cli(t, dir, "connectors", "show", "x", "--json")
	var got cpapi.Connector
	if err != nil || json.Unmarshal([]byte(o), &got) != nil || got.Fingerprint != c.Fingerprint {
		t.Fatalf("--json: %v %q", err, o)
	}
	if safe("plain ümlaut text") != "plain ümlaut text" || safe("a\x00b\xffc") != `a\x00b\xffc` {
		t.Errorf("safe: %q %q", safe("plain ümlaut text"), safe("a\x00b\xffc"))
	}
}

// TestKeysDownloadToStdout: -o - writes the key to standard output, not to
// a file named "-".
func TestKeysDownloadToStdout(t *testing.T) {
	const text = "1|cp.example.com|AAAA"
	dir := fakeServer(t, func(r *http.Request) (int, any) {
		return 200, cpapi.KeyText{KeyInfo: cpapi.KeyInfo{Key: cpapi.Key{Name: "K", MaxUses: 1}}, Text: text}
	})
	t.Chdir(t.TempDir())
	o, e, err := cli(t, dir, "keys", "download", "K", "-o", "-")
	if err != nil || o != text+"\n" {
		t.Fatalf("keys download -o -: %v stdout %q stderr %q", err, o, e)
	}
	if _, err := os.Stat("-"); err == nil {
		t.Fatal("keys download -o - wrote a file named -")
	}
}

// TestAdminConfModeWarning: like ssh with a private key, the CLI warns
// when admin.conf (it holds the admin token) is readable by others.
func TestAdminConfModeWarning(t *testing.T) {
	dir := fakeServer(t, func(r *http.Request) (int, any) { return 200, []cpapi.Group{} })
	conf := filepath.Join(dir, "admin.conf")
	if _, e, err := cli(t, dir, "groups", "list"); err != nil || strings.Contains(e, "warning") {
		t.Fatalf("private admin.conf: %v %q", err, e)
	}
	os.Chmod(conf, 0o644)
	_, e, err := cli(t, dir, "groups", "list")
	if err != nil || !strings.Contains(e, "warning: "+conf+" is mode 0644") || !strings.Contains(e, "chmod 600 "+conf) {
		t.Fatalf("0644 admin.conf: %v stderr %q", err, e)
	}
}

// TestServerFlagsAreChecked: --database takes a PostgreSQL URL or an
// explicit SQLite file, --hostname a HOST[:PORT]; anything else is a usage
// error before anything is created.
func TestServerFlagsAreChecked(t *testing.T) {
	wd := t.TempDir()
	t.Chdir(wd)
	for _, args := range [][]string{
		{"--database", "not a url"},
		{"--database", "mysql://db/outpost"},
		{"--hostname", "bad host!"},
		{"--hostname", "cp.example.com:0"},
	} {
		var o, e strings.Builder
		err := run(context.Background(), append([]string{"server", "--data", filepath.Join(wd, "data"), "--listen", "127.0.0.1:0"}, args...), strings.NewReader(""), &o, &e)
		if code := exitCode(err, &e); code != exitUsage || !strings.Contains(e.String(), args[0]) {
			t.Errorf("server %v: exit %d, stderr %q; want 2 naming %s", args, code, e.String(), args[0])
		}
	}
	if ents, _ := os.ReadDir(wd); len(ents) != 0 {
		t.Errorf("refused flags created %v", ents)
	}
}

// TestServerOverride: --server and OUTPOST_SERVER replace admin.conf's URL
// (a host without DNS for the server's --hostname).
func TestServerOverride(t *testing.T) {
	var url string
	dir := fakeServer(t, func(r *http.Request) (int, any) { return 200, []cpapi.Group{{Name: "melb"}} })
	conf := filepath.Join(dir, "admin.conf")
	cfg, _ := cpclient.LoadConfig(conf)
	url, cfg.Server = cfg.Server, "https://cp.invalid:1"
	cpclient.WriteConfig(conf, cfg)
	if _, _, err := cli(t, dir, "groups", "list"); err == nil {
		t.Fatal("admin.conf's unreachable server answered")
	}
	if o, e, err := cli(t, dir, "groups", "list", "--server", url); err != nil || !strings.Contains(o, "melb") {
		t.Fatalf("--server: %v %q %q", err, o, e)
	}
	t.Setenv("OUTPOST_SERVER", url)
	if o, e, err := cli(t, dir, "groups", "list"); err != nil || !strings.Contains(o, "melb") {
		t.Fatalf("OUTPOST_SERVER: %v %q %q", err, o, e)
	}
	if _, _, err := cli(t, dir, "groups", "list", "--server", "http://x"); exitCode(err, io.Discard) != exitUsage {
		t.Fatalf("--server http://x: %v", err)
	}
}
