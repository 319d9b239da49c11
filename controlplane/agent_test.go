package controlplane_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/internal/testtool"
)

// connector is an enrolled connector as the agent holds it: its chain
// and key, and a mutual-TLS client presenting them.
type connector struct {
	e     *env
	name  string
	fp    string
	chain string
	key   crypto.Signer
	c     *http.Client
}

func (e *env) enrolled(keyName, fingerprint string) *connector {
	e.t.Helper()
	key := newSigner(e.t)
	r := e.enroll(e.key(keyName, 1, ""), csrFor(e.t, key), fingerprint, "n")
	if r.Status != 200 {
		e.t.Fatalf("enroll: %+v", r)
	}
	return &connector{e: e, name: r.Name, fp: fingerprint, chain: r.Certificate, key: key, c: e.mtls(r.Certificate, key)}
}

// post sends in over the connector's mutual TLS and decodes the answer
// into out (on 200) or a refusal.
func (k *connector) post(c *http.Client, path string, in, out any) (int, cpapi.Error) {
	k.e.t.Helper()
	b, _ := json.Marshal(in)
	resp, err := c.Post(k.e.url+path, "application/json", bytes.NewReader(b))
	if err != nil {
		k.e.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	var e cpapi.Error
	if resp.StatusCode == 200 {
		err = json.NewDecoder(resp.Body).Decode(out)
	} else {
		err = json.NewDecoder(resp.Body).Decode(&e)
	}
	if err != nil {
		k.e.t.Fatalf("POST %s: answer %d is not JSON: %v", path, resp.StatusCode, err)
	}
	return resp.StatusCode, e
}

func (k *connector) beat(c *http.Client, req cpapi.HeartbeatRequest) (cpapi.HeartbeatResponse, int, cpapi.Error) {
	var out cpapi.HeartbeatResponse
	if req.Fingerprint == "" {
		req.Fingerprint = k.fp
	}
	if req.Version == "" {
		req.Version = "1.0"
	}
	st, e := k.post(c, cpapi.PathHeartbeat, req, &out)
	return out, st, e
}

func (k *connector) renew(c *http.Client, csr string) (cpapi.RenewResponse, int, cpapi.Error) {
	var out cpapi.RenewResponse
	st, e := k.post(c, cpapi.PathRenew, cpapi.RenewRequest{CSR: csr, Fingerprint: k.fp}, &out)
	return out, st, e
}

func (e *env) connector(name string) cpapi.Connector {
	e.t.Helper()
	c, err := e.admin.Connector(context.Background(), name)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func TestHeartbeatRecordsAddressesSkewAndAnswersTime(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn)
		k := e.enrolled("Alice", fp(1))
		addrs := []string{"192.0.2.10/24", "2001:db8::10/64"}
		resp, st, refusal := k.beat(k.c, cpapi.HeartbeatRequest{Uptime: 42, Addresses: addrs, Skew: 0.002})
		if st != 200 {
			t.Fatalf("heartbeat: %d %+v", st, refusal)
		}
		if !resp.ServerTime.Equal(e.clock.Now()) || resp.Interval != 10 || resp.Name != k.name || resp.State != "active" {
			t.Errorf("answer %+v: want server_time %s (the service's clock) and interval 10", resp, e.clock.Now())
		}
		c := e.connector(k.name)
		if strings.Join(c.Addresses, ",") != strings.Join(addrs, ",") || c.Skew != 0.002 || c.Uptime != 42 || !c.LastSeen.Equal(e.clock.Now()) {
			t.Errorf("connector after heartbeat: addresses %v skew %v uptime %d last seen %s", c.Addresses, c.Skew, c.Uptime, c.LastSeen)
		}
		// Written to the database, not only held in memory: a new process sees it.
		if err := e.srv.Service.Store.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(time.Second)
		if _, st, _ := k.beat(k.c, cpapi.HeartbeatRequest{Addresses: addrs[:1], Skew: -1.5}); st != 200 {
			t.Fatal(st)
		}
		e.restart(dsn)
		c = e.connector(k.name)
		if strings.Join(c.Addresses, ",") != addrs[0] || c.Skew != -1.5 || !c.LastSeen.Equal(e.clock.Now()) {
			t.Errorf("after a restart: addresses %v skew %v last seen %s; want the last heartbeat's", c.Addresses, c.Skew, c.LastSeen)
		}
		for _, bad := range [][]string{{"192.0.2.10/24 x"}, {"\x1b[31m"}, {"not-an-address"}} {
			if _, st, r := k.beat(k.c, cpapi.HeartbeatRequest{Addresses: bad}); st != 400 || !strings.Contains(r.Message, "addresses") {
				t.Errorf("addresses %q: %d %+v, want 400 naming addresses", bad, st, r)
			}
		}
	})
}

// restart closes the server and opens another on the same data directory
// and database, as a new process would.
func (e *env) restart(dsn string) {
	e.t.Helper()
	e.stop()
	ne := newEnvTuned(e.t, e.dir, dsn, e.tune)
	ne.clock.t = e.clock.Now()
	*e = *ne
}

func TestHealth(t *testing.T) {
	e := newEnv(t, "")
	k := e.enrolled("Alice", fp(1))
	want := func(health string) {
		t.Helper()
		if c := e.connector(k.name); c.Health != health {
			t.Errorf("health %q, want %q (last seen %s, now %s)", c.Health, health, c.LastSeen, e.clock.Now())
		}
		cs, err := e.admin.Connectors(context.Background(), "")
		if err != nil || len(cs) != 1 || cs[0].Health != health {
			t.Errorf("list: %+v %v, want health %q", cs, err, health)
		}
	}
	want("never seen")
	if _, st, _ := k.beat(k.c, cpapi.HeartbeatRequest{}); st != 200 {
		t.Fatal(st)
	}
	want("healthy")
	e.clock.Advance(29 * time.Second)
	want("healthy")
	e.clock.Advance(time.Second) // 3 intervals of 10 s without a heartbeat
	want("unreachable")
	if _, st, _ := k.beat(k.c, cpapi.HeartbeatRequest{}); st != 200 {
		t.Fatal(st)
	}
	want("healthy")
	if _, st, r := k.beat(k.c, cpapi.HeartbeatRequest{Fingerprint: "mac=00:50:56:00:00:99;uuid=4210-1"}); st != 403 || r.Code != "blocked" {
		t.Fatalf("changed fingerprint: %d %+v", st, r)
	}
	want("blocked")
	if c := e.connector(k.name); !strings.Contains(c.StateReason, "mac changed") {
		t.Errorf("reason %q", c.StateReason)
	}
	e.clock.Advance(time.Hour)
	want("blocked") // blocked says more than unreachable
	if _, err := e.admin.RevokeConnector(context.Background(), k.name); err != nil {
		t.Fatal(err)
	}
	want("revoked")
}

func TestHealthFollowsTheInterval(t *testing.T) {
	e := newEnv(t, "")
	e.srv.Service.Interval = time.Minute
	k := e.enrolled("Alice", fp(1))
	if r, st, _ := k.beat(k.c, cpapi.HeartbeatRequest{}); st != 200 || r.Interval != 60 {
		t.Fatalf("heartbeat: %d %+v, want interval 60", st, r)
	}
	e.clock.Advance(2 * time.Minute)
	if c := e.connector(k.name); c.Health != "healthy" {
		t.Errorf("after 2 of 3 intervals: %q", c.Health)
	}
	e.clock.Advance(time.Minute)
	if c := e.connector(k.name); c.Health != "unreachable" {
		t.Errorf("after 3 intervals: %q", c.Health)
	}
}

func TestRenew(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn)
		k := e.enrolled("Alice", fp(1))
		c0 := e.connector(k.name)
		oldSerial := c0.Serial
		if _, st, _ := k.beat(k.c, cpapi.HeartbeatRequest{}); st != 200 {
			t.Fatal(st)
		}
		// (The TLS layer checks certificates against the real clock, so
		// the test does not move the service's clock ahead.)
		e.clock.Advance(time.Hour)
		newKey := newSigner(t)
		csr := csrFor(t, newKey)
		r, st, refusal := k.renew(k.c, csr)
		if st != 200 {
			t.Fatalf("renew: %d %+v", st, refusal)
		}
		leaf := verifyChain(t, r.Certificate, k.chain, e.clock.Now())
		if leaf.Subject.CommonName != k.name || !leaf.NotAfter.After(c0.CertExpires) {
			t.Errorf("renewed certificate: CN %q, expires %s", leaf.Subject.CommonName, leaf.NotAfter)
		}
		c := e.connector(k.name)
		if c.Serial == oldSerial || c.CertPEM != r.Certificate || !c.CertExpires.Equal(leaf.NotAfter) {
			t.Errorf("connector after renewal: serial %s (was %s), expires %s", c.Serial, oldSerial, c.CertExpires)
		}
		// The answer was lost: the retry with the same key pair, still on
		// the old certificate, gets the same certificate.
		again, st, _ := k.renew(k.c, csrFor(t, newKey))
		if st != 200 || again.Certificate != r.Certificate {
			t.Fatalf("retry with the same key pair: %d, same certificate %v", st, again.Certificate == r.Certificate)
		}
		// The old certificate keeps working until the new one is used.
		for range 2 {
			if _, st, r := k.beat(k.c, cpapi.HeartbeatRequest{}); st != 200 {
				t.Fatalf("heartbeat with the old certificate after renewal: %d %+v", st, r)
			}
		}
		nc := e.mtls(r.Certificate, newKey)
		if _, st, r := k.beat(nc, cpapi.HeartbeatRequest{}); st != 200 {
			t.Fatalf("heartbeat with the new certificate: %d %+v", st, r)
		}
		old := e.mtls(k.chain, k.key) // a fresh connection: the old one may be reused
		if _, st, r := k.beat(old, cpapi.HeartbeatRequest{}); st != 403 || r.Code != "connector_revoked" {
			t.Errorf("old certificate after the new one was used: %d %+v, want 403 connector_revoked", st, r)
		}
		if _, st, r := k.renew(old, csrFor(t, newSigner(t))); st != 403 || r.Code != "connector_revoked" {
			t.Errorf("renewal with the old certificate after the new one was used: %d %+v", st, r)
		}
		// Renewing from the new certificate works the same way.
		k2 := newSigner(t)
		r2, st, _ := k.renew(nc, csrFor(t, k2))
		if st != 200 || r2.Certificate == r.Certificate {
			t.Fatalf("second renewal: %d", st)
		}
		if _, st, _ := k.beat(nc, cpapi.HeartbeatRequest{}); st != 200 {
			t.Fatalf("heartbeat on the certificate renewed from: %d", st)
		}
		k.chain, k.key, k.c = r2.Certificate, k2, e.mtls(r2.Certificate, k2)

		// Refusals: a changed fingerprint blocks, as in a heartbeat.
		var out cpapi.RenewResponse
		st, rf := k.post(k.c, cpapi.PathRenew, cpapi.RenewRequest{CSR: csrFor(t, newSigner(t)), Fingerprint: fp(2)}, &out)
		if st != 403 || rf.Code != "blocked" || !strings.Contains(rf.Message, "is blocked: the hardware fingerprint changed") {
			t.Errorf("renewal with another fingerprint: %d %+v", st, rf)
		}
		if _, st, rf := k.renew(k.c, csrFor(t, newSigner(t))); st != 403 || rf.Code != "blocked" {
			t.Errorf("renewal of a blocked connector: %d %+v", st, rf)
		}
		if _, st, _ := k.beat(k.c, cpapi.HeartbeatRequest{}); st != 200 {
			t.Fatalf("heartbeat with the original hardware: %d", st)
		}
		if _, st, rf := k.renew(k.c, "not a CSR"); st != 400 || rf.Code != "bad_csr" {
			t.Errorf("bad CSR: %d %+v", st, rf)
		}
		if _, st, rf := k.renew(e.http, csrFor(t, newSigner(t))); st != 401 || rf.Code != "unauthorized" {
			t.Errorf("renewal without a client certificate: %d %+v", st, rf)
		}
		if _, err := e.admin.RevokeConnector(context.Background(), k.name); err != nil {
			t.Fatal(err)
		}
		if _, st, rf := k.renew(k.c, csrFor(t, newSigner(t))); st != 403 || rf.Code != "connector_revoked" || !strings.Contains(rf.Message, "was revoked") {
			t.Errorf("renewal of a revoked connector: %d %+v", st, rf)
		}
		if _, st, rf := k.beat(k.c, cpapi.HeartbeatRequest{}); st != 403 || rf.Code != "connector_revoked" {
			t.Errorf("heartbeat of a revoked connector: %d %+v", st, rf)
		}
	})
}

// TestRevocationIsImmediate: heartbeats are answered from a cache, which a
// revocation must not outlive.
func TestRevocationIsImmediate(t *testing.T) {
	e := newEnv(t, "")
	k := e.enrolled("Alice", fp(1))
	for range 3 {
		if _, st, _ := k.beat(k.c, cpapi.HeartbeatRequest{}); st != 200 {
			t.Fatal(st)
		}
	}
	if _, err := e.admin.RevokeConnector(context.Background(), k.name); err != nil {
		t.Fatal(err)
	}
	if _, st, rf := k.beat(k.c, cpapi.HeartbeatRequest{}); st != 403 || rf.Code != "connector_revoked" {
		t.Fatalf("first heartbeat after the revocation: %d %+v", st, rf)
	}
	// Deleting its group with force revokes too.
	e2 := newEnv(t, "")
	k2 := e2.enrolled("Bob", fp(2))
	if _, st, _ := k2.beat(k2.c, cpapi.HeartbeatRequest{}); st != 200 {
		t.Fatal(st)
	}
	if _, err := e2.admin.DeleteGroup(context.Background(), "g", true); err != nil {
		t.Fatal(err)
	}
	if _, st, rf := k2.beat(k2.c, cpapi.HeartbeatRequest{}); st != 403 || rf.Code != "connector_revoked" {
		t.Fatalf("heartbeat after its group was deleted: %d %+v", st, rf)
	}
}

// verifyChain checks a renewed chain (leaf, signing CA, root) with x509
// against the enrolled chain's root, and with openssl verify when present.
func verifyChain(t *testing.T, chainPEM, enrolledPEM string, now time.Time) *x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	rest := []byte(chainPEM)
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	if len(certs) != 3 {
		t.Fatalf("renewed chain has %d certificates, want leaf, signing CA, root", len(certs))
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(enrolledPEM[strings.LastIndex(enrolledPEM, "-----BEGIN"):]))
	inter := x509.NewCertPool()
	inter.AddCert(certs[1])
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("renewed certificate does not verify against the enrolled root: %v", err)
	}
	{
		testtool.Need(t, "openssl")
		dir := t.TempDir()
		parts := strings.SplitAfter(chainPEM, "-----END CERTIFICATE-----\n")
		for i, n := range []string{"leaf.pem", "ca.pem", "root.pem"} {
			os.WriteFile(filepath.Join(dir, n), []byte(parts[i]), 0o644)
		}
		root := enrolledPEM[strings.LastIndex(enrolledPEM, "-----BEGIN"):]
		os.WriteFile(filepath.Join(dir, "enrolled-root.pem"), []byte(root), 0o644)
		out, err := exec.Command("openssl", "verify", "-attime", strconv.FormatInt(now.Unix(), 10), "-purpose", "sslclient",
			"-CAfile", filepath.Join(dir, "enrolled-root.pem"), "-untrusted", filepath.Join(dir, "ca.pem"), filepath.Join(dir, "leaf.pem")).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl verify: %v\n%s", err, out)
		}
	}
	return certs[0]
}
