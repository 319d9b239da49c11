package controlplane_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/controlplane"
	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/cpclient"
	"github.com/outpost-appliance/outpost/internal/testtool"
	"github.com/outpost-appliance/outpost/provkey"
)

func TestConcurrentEnrollmentCountsExactly(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn)
		for _, tc := range []struct{ m, n int }{{1, 50}, {5, 100}, {50, 500}} {
			name := fmt.Sprintf("K%d", tc.m)
			text := e.key(name, int64(tc.m), "")
			csrs := make([]string, tc.n)
			for i := range csrs {
				csrs[i] = csrFor(t, newSigner(t))
			}
			results := make([]result, tc.n)
			var wg sync.WaitGroup
			for i := range tc.n {
				wg.Add(1)
				go func() { defer wg.Done(); results[i] = e.enroll(text, csrs[i], fp(i), fmt.Sprint(i)) }()
			}
			wg.Wait()
			names := map[string]bool{}
			for _, r := range results {
				switch {
				case r.Status == 200:
					names[r.Name] = true
				case r.Status == 403 && r.Error == cpapi.CodeKeyExhausted:
				default:
					t.Errorf("unexpected answer %+v", r)
				}
			}
			if len(names) != tc.m {
				t.Errorf("M=%d N=%d: %d distinct successes, want %d", tc.m, tc.n, len(names), tc.m)
			}
			for i := 1; i <= tc.m; i++ {
				if !names[fmt.Sprintf("%s-%d", name, i)] {
					t.Errorf("no connector %s-%d among %v", name, i, names)
				}
			}
			if k := e.keyInfo(name); k.UseCount != int64(tc.m) {
				t.Errorf("use count %d, want %d", k.UseCount, tc.m)
			}
		}
		if n := len(e.connectors()); n != 56 {
			t.Errorf("%d connectors stored, want 56", n)
		}
	})
}

func TestRetryWithSameCSRConsumesNothing(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn)
		text := e.key("Melbourne", 2, "")
		csr := csrFor(t, newSigner(t))
		a := e.enroll(text, csr, fp(1), "n1")
		b := e.enroll(text, csr, fp(1), "n1")
		if a.Status != 200 || b.Status != 200 || a.Name != "Melbourne-1" || b.Name != a.Name || b.Certificate != a.Certificate {
			t.Fatalf("first %+v\nretry %+v", a, b)
		}
		// Concurrent retries of one CSR also yield one connector.
		csr2 := csrFor(t, newSigner(t))
		var wg sync.WaitGroup
		res := make([]result, 20)
		for i := range res {
			wg.Add(1)
			go func() { defer wg.Done(); res[i] = e.enroll(text, csr2, fp(2), "n2") }()
		}
		wg.Wait()
		for _, r := range res {
			if r.Status != 200 || r.Name != "Melbourne-2" {
				t.Errorf("concurrent retry: %+v", r)
			}
		}
		if k := e.keyInfo("Melbourne"); k.UseCount != 2 {
			t.Errorf("use count %d, want 2", k.UseCount)
		}
		// The key is now used up, but a retry still gets its answer.
		if r := e.enroll(text, csr, fp(1), "n1"); r.Status != 200 || r.Name != "Melbourne-1" {
			t.Errorf("retry after exhaustion: %+v", r)
		}
		r := e.enroll(text, csrFor(t, newSigner(t)), fp(3), "n3")
		want := "Melbourne has been used 2 of 2 times; raise its maximum uses"
		if r.Status != 403 || r.Error != "key_exhausted" || !strings.Contains(r.Message, want) {
			t.Errorf("third enrollment: %+v, want key_exhausted %q", r, want)
		}
	})
}

func TestExpiryWithInjectedClock(t *testing.T) {
	e := newEnv(t, "")
	text := e.key("Sydney", 5, "36h")
	e.clock.Advance(35 * time.Hour)
	if r := e.enroll(text, csrFor(t, newSigner(t)), fp(1), "a"); r.Status != 200 {
		t.Fatalf("before expiry: %+v", r)
	}
	e.clock.Advance(time.Hour)
	r := e.enroll(text, csrFor(t, newSigner(t)), fp(2), "b")
	if r.Status != 403 || r.Error != cpapi.CodeKeyExpired || !strings.Contains(r.Message, "expired at 2026-11-24T00:00:00Z") {
		t.Fatalf("after expiry: %+v", r)
	}
	if k := e.keyInfo("Sydney"); k.UseCount != 1 || !k.Expired {
		t.Fatalf("key after expiry: %+v", k)
	}
	never := e.key("Forever", 1, "never")
	e.clock.Advance(10 * 365 * 24 * time.Hour)
	if r := e.enroll(never, csrFor(t, newSigner(t)), fp(3), "c"); r.Status != 200 {
		t.Fatalf("never-expiring key: %+v", r)
	}
	// Default expiry is 14 days.
	e.key("Default", 1, "")
	if k := e.keyInfo("Default"); !k.ExpiresAt.Equal(e.clock.Now().Add(14 * 24 * time.Hour)) {
		t.Fatalf("default expiry %v, want now+14d", k.ExpiresAt)
	}
}

func TestRegenerateRevokeDelete(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn)
		ctx := context.Background()
		old := e.key("Perth", 10, "")
		if r := e.enroll(old, csrFor(t, newSigner(t)), fp(1), "a"); r.Name != "Perth-1" {
			t.Fatalf("%+v", r)
		}
		kt, err := e.admin.RegenerateKey(ctx, "Perth")
		if err != nil {
			t.Fatal(err)
		}
		if kt.Text == old || kt.Generation != 2 {
			t.Fatalf("regenerate: same text or generation %d", kt.Generation)
		}
		r := e.enroll(old, csrFor(t, newSigner(t)), fp(2), "b")
		if r.Status != 401 || r.Error != cpapi.CodeInvalidKey || !strings.Contains(r.Message, "regenerated") {
			t.Fatalf("old text after regenerate: %+v", r)
		}
		if r := e.enroll(kt.Text, csrFor(t, newSigner(t)), fp(3), "c"); r.Name != "Perth-2" {
			t.Fatalf("new text: %+v (naming must continue)", r)
		}
		if _, err := e.admin.RevokeKey(ctx, "Perth"); err != nil {
			t.Fatal(err)
		}
		if r := e.enroll(kt.Text, csrFor(t, newSigner(t)), fp(4), "d"); r.Status != 403 || r.Error != cpapi.CodeKeyRevoked {
			t.Fatalf("revoked: %+v", r)
		}
		if _, err := e.admin.DeleteKey(ctx, "Perth", true); err != nil {
			t.Fatal(err)
		}
		if r := e.enroll(kt.Text, csrFor(t, newSigner(t)), fp(5), "e"); r.Status != 401 || r.Error != cpapi.CodeInvalidKey {
			t.Fatalf("deleted: %+v", r)
		}
		if n := len(e.connectors()); n != 2 {
			t.Fatalf("%d connectors after key deletion, want 2 (enrolled connectors stay)", n)
		}
		// A new key of the same name continues the naming.
		again := e.key("Perth", 1, "")
		if r := e.enroll(again, csrFor(t, newSigner(t)), fp(6), "f"); r.Name != "Perth-3" {
			t.Fatalf("recreated key: %+v", r)
		}
	})
}

func TestAdminKeysAndGroups(t *testing.T) {
	e := newEnv(t, "")
	text := e.key("Hobart", 1, "")
	if r := e.enroll(text, csrFor(t, newSigner(t)), fp(1), "a"); r.Status != 200 {
		t.Fatal(r)
	}
	ctx := context.Background()
	var apiErr *cpapi.Error
	_, err := e.admin.RevealKey(ctx, "Hobart")
	if !errors.As(err, &apiErr) || apiErr.Code != cpapi.CodeKeyExhausted || !strings.Contains(apiErr.Message, "used 1 of 1 times") {
		t.Fatalf("reveal of used-up key: %v", err)
	}
	var refusal result
	if st := e.adminHTTP("POST", cpapi.Path(cpapi.PathKeyReveal, "Hobart"), nil, &refusal); st != 409 || refusal.Error != cpapi.CodeKeyExhausted {
		t.Fatalf("reveal of used-up key on the wire: %d %+v", st, refusal)
	}
	_, err = e.admin.SetMaxUses(ctx, "Hobart", 0)
	if !errors.As(err, &apiErr) || apiErr.Code != cpapi.CodeBadRequest {
		t.Fatalf("max uses 0: %v", err)
	}
	if st := e.adminHTTP("PATCH", cpapi.Path(cpapi.PathKey, "Hobart"), map[string]int{"max_uses": 0}, &refusal); st != 400 || refusal.Error != cpapi.CodeBadRequest {
		t.Fatalf("max uses 0 on the wire: %d %+v", st, refusal)
	}
	if _, err := e.admin.SetMaxUses(ctx, "Hobart", 3); err != nil {
		t.Fatal(err)
	}
	kt, err := e.admin.RevealKey(ctx, "Hobart")
	if err != nil {
		t.Fatal(err)
	}
	if kt.Text != text {
		t.Fatalf("revealed text differs from created text")
	}
	if r := e.enroll(text, csrFor(t, newSigner(t)), fp(2), "b"); r.Status != 200 {
		t.Fatal(r)
	}
	_, err = e.admin.SetMaxUses(ctx, "Hobart", 1)
	if !errors.As(err, &apiErr) || apiErr.Code != cpapi.CodeConflict || !strings.Contains(apiErr.Message, "already been used 2 times") {
		t.Fatalf("max uses below count: %v", err)
	}
	keys, err := e.admin.Keys(ctx, cpapi.KeyFilter{Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || strings.Contains(keys[0].Redacted, text[len(text)-20:]) || !strings.Contains(keys[0].Redacted, "redacted") {
		t.Fatalf("list: %+v", keys)
	}
	raw, _ := json.Marshal(keys)
	if bytes.Contains(raw, []byte(text[10:])) {
		t.Fatal("key list leaks the secret")
	}
	_, err = e.admin.DeleteGroup(ctx, "g", false)
	if !errors.As(err, &apiErr) || apiErr.Code != cpapi.CodeConflict || !strings.Contains(apiErr.Message, "--force") {
		t.Fatalf("delete non-empty group: %v", err)
	}
	if _, err := e.admin.DeleteGroup(ctx, "g", true); err != nil {
		t.Fatal(err)
	}
	for _, c := range e.connectors() {
		if c["state"] != "revoked" {
			t.Fatalf("connector after forced group delete: %v", c)
		}
	}
	if strings.Contains(e.logBuf.String(), text) || strings.Contains(e.logBuf.String(), text[len(text)-30:]) {
		t.Fatal("the log contains the key")
	}
}

func TestBadInputIsRefusedAndNothingCounted(t *testing.T) {
	e := newEnv(t, "")
	text := e.key("Darwin", 5, "")
	good := csrFor(t, newSigner(t))
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	weak := csrFor(t, rsaKey)
	blk, _ := pem.Decode([]byte(good))
	der := append([]byte(nil), blk.Bytes...)
	der[len(der)-3] ^= 0xff
	badSig := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	pk, _ := provkey.Parse(text)
	other := pk
	other.Host = "elsewhere.example.com"
	body := func(key, csr string) string {
		b, _ := json.Marshal(cpapi.EnrollRequest{Key: key, CSR: csr, Fingerprint: fp(1), Nonce: "n"})
		return string(b)
	}
	for _, tc := range []struct {
		name, body, code string
		status           int
		msg              string
	}{
		{"malformed JSON", `{"key": "x",`, "bad_request", 400, "not valid JSON"},
		{"unknown field", `{"key": "x", "color": 1}`, "bad_request", 400, "unknown field"},
		{"missing fields", `{"key": "x"}`, "bad_request", 400, "missing csr, fingerprint, nonce"},
		{"10 MB body", `{"key": "` + strings.Repeat("A", 10<<20) + `"}`, "too_large", 413, "larger than"},
		{"weak key", body(text, weak), "bad_csr", 400, "1024 bits is too weak"},
		{"wrong signature", body(text, badSig), "bad_csr", 400, "signature does not verify"},
		{"key for another host", body(other.Reveal(), good), "wrong_host", 400, "issued for the control plane at elsewhere.example.com"},
		{"garbage key", body("1|x|AAAA", good), "invalid_key", 401, "not valid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.postRaw("/api/v1/enroll", strings.NewReader(tc.body))
			if r.Status != tc.status || r.Error != tc.code || !strings.Contains(r.Message, tc.msg) {
				t.Fatalf("got %d %s %q, want %d %s containing %q", r.Status, r.Error, r.Message, tc.status, tc.code, tc.msg)
			}
		})
	}
	if k := e.keyInfo("Darwin"); k.UseCount != 0 {
		t.Fatalf("use count %d after refusals", k.UseCount)
	}
	if n := len(e.connectors()); n != 0 {
		t.Fatalf("%d connectors stored after refusals", n)
	}
	// Admin requests without or with a wrong token.
	for _, tok := range []string{"", "Bearer wrong", "Basic abc"} {
		req, _ := http.NewRequest("POST", e.url+"/api/v1/keys", strings.NewReader(`{"name":"X","group":"g","max_uses":1}`))
		if tok != "" {
			req.Header.Set("Authorization", tok)
		}
		resp, err := e.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var r result
		json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if resp.StatusCode != 401 || r.Error != "unauthorized" || !strings.Contains(r.Message, "token") {
			t.Fatalf("token %q: %d %+v", tok, resp.StatusCode, r)
		}
	}
	keys, err := e.admin.Keys(context.Background(), cpapi.KeyFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 {
		t.Fatalf("%d keys after unauthorized create, want 1", len(keys))
	}
	log := e.logBuf.String()
	if !strings.Contains(log, `"key_id":"`+pk.ID.String()) || !strings.Contains(log, `"fingerprint":"mac=`) {
		t.Fatalf("refusal log lacks key id or fingerprint:\n%.2000s", log)
	}
	if strings.Contains(log, text[len(text)-30:]) {
		t.Fatal("log contains the key")
	}
}

// TestRateLimit: failures are counted per (address, key id); after 10 in
// a minute the wrong secrets get 429, but a valid key from the same
// address (another key, or this key's current secret) is never refused
// because of someone else's failures.
func TestRateLimit(t *testing.T) {
	e := newEnv(t, "")
	text := e.key("Cairns", 5, "")
	other := e.key("Darwin", 5, "")
	pk, _ := provkey.Parse(text)
	wrong, _ := pk.WithSecret(nil)
	for i := range 10 {
		if r := e.enroll(wrong.Reveal(), csrFor(t, newSigner(t)), fp(i), "x"); r.Error != "invalid_key" {
			t.Fatalf("attempt %d: %+v", i, r)
		}
	}
	if r := e.enroll(wrong.Reveal(), csrFor(t, newSigner(t)), fp(1), "x"); r.Status != 429 || r.Error != "rate_limited" {
		t.Fatalf("11th wrong secret: %+v", r)
	}
	if r := e.enroll(other, csrFor(t, newSigner(t)), fp(1), "x"); r.Status != 200 {
		t.Fatalf("another valid key from the same address after 10 failures: %+v", r)
	}
	if r := e.enroll(text, csrFor(t, newSigner(t)), fp(2), "x"); r.Status != 200 {
		t.Fatalf("this key's valid secret from the same address after 10 failures: %+v", r)
	}
	e.clock.Advance(time.Minute)
	if r := e.enroll(wrong.Reveal(), csrFor(t, newSigner(t)), fp(1), "x"); r.Status != 401 {
		t.Fatalf("wrong secret after a minute: %+v", r)
	}
}

func TestHeartbeatBlocksChangedFingerprint(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn)
		text := e.key("Alice", 1, "")
		signer := newSigner(t)
		orig := "mac=00:50:56:00:00:01;uuid=4210-aa"
		r := e.enroll(text, csrFor(t, signer), orig, "n")
		if r.Status != 200 {
			t.Fatal(r)
		}
		var chain [][]byte
		rest := []byte(r.Certificate)
		for {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			chain = append(chain, b.Bytes)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM([]byte(r.Certificate[strings.LastIndex(r.Certificate, "-----BEGIN"):]))
		mtls := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool,
			Certificates: []tls.Certificate{{Certificate: chain[:2], PrivateKey: signer}}}}}
		defer mtls.CloseIdleConnections()
		beat := func(c *http.Client, fingerprint string) result {
			b, _ := json.Marshal(cpapi.HeartbeatRequest{Fingerprint: fingerprint, Version: "1.0", Uptime: 42})
			resp, err := c.Post(e.url+"/api/v1/heartbeat", "application/json", bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var out result
			json.NewDecoder(resp.Body).Decode(&out)
			out.Status = resp.StatusCode
			return out
		}
		if r := beat(mtls, orig); r.Status != 200 {
			t.Fatalf("heartbeat: %+v", r)
		}
		c := map[string]any{}
		e.adminHTTP("GET", cpapi.Path(cpapi.PathConnector, "Alice-1"), nil, &c)
		if c["state"] != "active" || c["version"] != "1.0" || c["last_seen"] == "0001-01-01T00:00:00Z" {
			t.Fatalf("after heartbeat: %v", c)
		}
		r = beat(mtls, "mac=00:50:56:00:00:02;uuid=4210-aa")
		if r.Status != 403 || r.Error != "blocked" || !strings.Contains(r.Message, "mac changed from 00:50:56:00:00:01 to 00:50:56:00:00:02") || strings.Contains(r.Message, "uuid") {
			t.Fatalf("changed MAC: %+v", r)
		}
		e.adminHTTP("GET", cpapi.Path(cpapi.PathConnector, "Alice-1"), nil, &c)
		if c["state"] != "blocked" || !strings.Contains(c["state_reason"].(string), "mac changed") {
			t.Fatalf("connector after changed MAC: %v", c)
		}
		if r := beat(mtls, orig); r.Status != 200 {
			t.Fatalf("heartbeat with the original hardware again: %+v", r)
		}
		e.adminHTTP("GET", cpapi.Path(cpapi.PathConnector, "Alice-1"), nil, &c)
		if c["state"] != "active" {
			t.Fatalf("connector with the original hardware again: %v", c)
		}
		if r := beat(e.http, orig); r.Status != 401 {
			t.Fatalf("heartbeat without client certificate: %+v", r)
		}
		// Revoking the connector regenerates the group's keys.
		rev, err := e.admin.RevokeConnector(context.Background(), "Alice-1")
		if err != nil {
			t.Fatal(err)
		}
		if len(rev.Regenerated) != 1 || rev.Regenerated[0] != "Alice" {
			t.Fatalf("revoke: %+v", rev)
		}
		if k := e.keyInfo("Alice"); k.Generation != 2 {
			t.Fatalf("key generation %d after connector revoke, want 2", k.Generation)
		}
		if r := beat(mtls, orig); r.Status != 403 || r.Error != "connector_revoked" {
			t.Fatalf("revoked connector heartbeat: %+v", r)
		}
	})
}

func TestIssuedCertificateVerifiesWithOpenSSL(t *testing.T) {
	testtool.Need(t, "openssl")
	e := newEnv(t, "")
	r := e.enroll(e.key("Ver", 1, ""), csrFor(t, newSigner(t)), fp(1), "n")
	if r.Status != 200 {
		t.Fatal(r)
	}
	parts := strings.SplitAfter(r.Certificate, "-----END CERTIFICATE-----\n")
	if len(parts) != 4 || parts[3] != "" {
		t.Fatalf("chain has %d parts, want leaf, intermediate, root", len(parts))
	}
	dir := t.TempDir()
	for i, n := range []string{"leaf.pem", "intermediate.pem", "root.pem"} {
		os.WriteFile(filepath.Join(dir, n), []byte(parts[i]), 0o644)
	}
	cfg, _ := cpclient.LoadConfig(filepath.Join(e.dir, "admin.conf"))
	if cfg.CA != parts[2] {
		t.Fatal("the chain's root is not admin.conf's CA")
	}
	out, err := exec.Command("openssl", "verify", "-purpose", "sslclient", "-CAfile", filepath.Join(dir, "root.pem"),
		"-untrusted", filepath.Join(dir, "intermediate.pem"), filepath.Join(dir, "leaf.pem")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": OK") {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
}

func TestTwoServersOnePostgres(t *testing.T) {
	dsn := newPG(t)
	dir := t.TempDir()
	a := newEnvDir(t, dir, dsn, "cp.example.com:443")
	b := newEnvDir(t, dir, dsn, "cp.example.com:443")
	// Both servers accept the same keys (same CA, same data directory);
	// enrollments on two keys interleave across both, so each server's
	// batches lock both keys.
	keys := []string{a.key("Shared", 25, ""), b.key("Other", 25, "")}
	var wg sync.WaitGroup
	res := make([]result, 300)
	csrs := make([]string, len(res))
	for i := range csrs {
		csrs[i] = csrFor(t, newSigner(t))
	}
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := a
			if i%2 == 1 {
				e = b
			}
			res[i] = e.enroll(keys[(i/2)%2], csrs[i], fp(i), "n")
		}()
	}
	wg.Wait()
	ok := 0
	for _, r := range res {
		switch {
		case r.Status == 200:
			ok++
		case r.Error != cpapi.CodeKeyExhausted:
			t.Errorf("unexpected answer %+v", r)
		}
	}
	if ok != 50 {
		t.Fatalf("%d successes across two servers, want 50", ok)
	}
	for _, name := range []string{"Shared", "Other"} {
		if k := b.keyInfo(name); k.UseCount != 25 {
			t.Fatalf("%s: use count %d, want 25", name, k.UseCount)
		}
	}
}

func newPG(t *testing.T) string {
	return pgShared(t)
}

func TestServerRefusesDatabaseOfAnotherCA(t *testing.T) {
	dsn := pgShared(t)
	newEnv(t, dsn)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = controlplane.Open(context.Background(), controlplane.Config{DataDir: t.TempDir(), Database: dsn}, ln.Addr())
	if err == nil || !strings.Contains(err.Error(), "must share one data directory") {
		t.Fatalf("second CA on the same database: %v", err)
	}
}
