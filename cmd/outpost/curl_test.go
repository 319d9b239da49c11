package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-appliance/outpost/cpclient"
	"github.com/outpost-appliance/outpost/internal/testtool"
)

// TestEnrollWithCurlAndOpenSSL scripts enrollment and a heartbeat the way
// an admin would by hand: openssl makes an RSA key and CSR, curl posts it.
func TestEnrollWithCurlAndOpenSSL(t *testing.T) {
	testtool.Need(t, "curl", "openssl")
	dir := t.TempDir()
	p := startServer(t, dir, "")
	mustCLI(t, dir, "groups", "create", "melb")
	key := strings.TrimSpace(mustCLI(t, dir, "keys", "create", "--name", "Melbourne", "--group", "melb", "--max-uses", "1"))
	work := t.TempDir()
	file := func(n string) string { return filepath.Join(work, n) }
	if out, err := exec.Command("openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", file("app.key"), "-subj", "/CN=appliance", "-out", file("app.csr")).CombinedOutput(); err != nil {
		t.Fatalf("openssl req: %v\n%s", err, out)
	}
	csrPEM, _ := os.ReadFile(file("app.csr"))
	body, _ := json.Marshal(map[string]string{"key": key, "csr": string(csrPEM), "fingerprint": "mac=00:50:56:00:00:01;uuid=x", "nonce": "n1"})
	os.WriteFile(file("req.json"), body, 0o600)
	cfg, _ := cpclient.LoadConfig(filepath.Join(dir, "admin.conf"))
	os.WriteFile(file("ca.pem"), []byte(cfg.CA), 0o644)
	// The answers' string fields; a heartbeat's also has a number (interval).
	curl := func(args ...string) map[string]string {
		t.Helper()
		out, err := exec.Command("curl", append([]string{"-sS", "--cacert", file("ca.pem"), "-X", "POST"}, args...)...).Output()
		if err != nil {
			t.Fatalf("curl %v: %v", args, err)
		}
		var raw map[string]any
		if err := json.Unmarshal(out, &raw); err != nil {
			t.Fatalf("curl %v: answer is not JSON: %q", args, out)
		}
		m := map[string]string{}
		for k, v := range raw {
			if s, ok := v.(string); ok {
				m[k] = s
			}
		}
		return m
	}
	r := curl("--data", "@"+file("req.json"), p.url+"/api/v1/enroll")
	if r["name"] != "Melbourne-1" || !strings.Contains(r["certificate"], "BEGIN CERTIFICATE") {
		t.Fatalf("enroll: %v", r)
	}
	os.WriteFile(file("chain.pem"), []byte(r["certificate"]), 0o644)
	if out, err := exec.Command("openssl", "verify", "-CAfile", file("ca.pem"), "-untrusted", file("chain.pem"), file("chain.pem")).CombinedOutput(); err != nil {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
	hb := func(fp string) map[string]string {
		return curl("--cert", file("chain.pem"), "--key", file("app.key"), "--data", `{"fingerprint":"`+fp+`","version":"1","uptime":5}`, p.url+"/api/v1/heartbeat")
	}
	if r := hb("mac=00:50:56:00:00:01;uuid=x"); r["state"] != "active" {
		t.Fatalf("heartbeat: %v", r)
	}
	if r := hb("mac=00:50:56:00:00:02;uuid=x"); r["error"] != "blocked" || !strings.Contains(r["message"], "mac changed from 00:50:56:00:00:01 to 00:50:56:00:00:02") {
		t.Fatalf("heartbeat with a changed MAC: %v", r)
	}
	if out := mustCLI(t, dir, "connectors", "list"); !strings.Contains(out, "blocked") {
		t.Fatalf("connectors list after changed MAC:\n%s", out)
	}
}
