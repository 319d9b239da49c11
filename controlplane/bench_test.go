package controlplane_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/gob"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/controlplane/store"
	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/internal/pgtest"
	"github.com/outpost-appliance/outpost/pki"
)

// BenchmarkEnroll measures enrollments per second and latency percentiles
// over a keep-alive HTTPS client on loopback. Each iteration enrolls a batch
// (so `-benchtime 1x` still measures something); metrics: enrollments/s,
// p50-ms, p99-ms.
func BenchmarkEnroll(b *testing.B) {
	for _, db := range []string{"sqlite", "postgres"} {
		for _, c := range []int{1, 64, 512} {
			b.Run(fmt.Sprintf("%s/c=%d", db, c), func(b *testing.B) {
				dsn := ""
				if db == "postgres" {
					dsn = pgtest.Shared(b).NewDatabase(b)
				}
				benchEnroll(b, dsn, c)
			})
		}
	}
}

func benchEnroll(b *testing.B, dsn string, conc int) {
	e := newEnv(b, dsn)
	e.logBuf = nil
	batch := 2000
	if conc == 1 {
		batch = 500
	}
	total := batch * b.N
	text := e.key("Bench", int64(total), "never")
	bodies := make([][]byte, total)
	for i := range bodies {
		bodies[i], _ = json.Marshal(cpapi.EnrollRequest{Key: text, CSR: csrFor(b, newSigner(b)), Fingerprint: fp(i), Nonce: fmt.Sprint(i)})
	}
	tr := e.http.Transport.(*http.Transport)
	tr.MaxIdleConnsPerHost = conc
	// Open the connections (TLS handshakes) before timing.
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp, err := e.http.Get(e.url + "/healthz"); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	lat := make([]time.Duration, total)
	var next atomic.Int64
	var failed atomic.Int64
	b.ResetTimer()
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				t0 := time.Now()
				resp, err := e.http.Post(e.url+"/api/v1/enroll", "application/json", bytes.NewReader(bodies[i]))
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat[i] = time.Since(t0)
				if resp.StatusCode != 200 {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d enrollments failed", f, total)
	}
	if k := e.keyInfo("Bench"); k.UseCount != int64(total) {
		b.Fatalf("use count %d, want %d", k.UseCount, total)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(total)/elapsed.Seconds(), "enrollments/s")
	b.ReportMetric(float64(lat[total/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[total*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkHeartbeat measures heartbeats per second from benchConnectors
// simulated connectors, each with its own client certificate (ECDSA P-256,
// issued once per run by the signing CA directly) and its own keep-alive
// mutual-TLS connection to the in-process server on SQLite over loopback.
//
// The connectors run in a second process (this test binary again, see
// heartbeatClient): one process may hold 20,000 descriptors here, fewer
// than a client and a server end of 10,000 connections. Connections are
// made, and each sends a first heartbeat, before timing; each iteration
// every connector heartbeats heartbeatRounds times. The client is a
// minimal HTTP/1.1 writer and reader, so most of the CPU goes to the
// server. Metrics: heartbeats/s, p50-ms, p99-ms.
func BenchmarkHeartbeat(b *testing.B) {
	const n = benchConnectors
	e := newEnv(b, "")
	ids := benchIdentities(b, e, n)
	dir := b.TempDir()
	f, err := os.Create(filepath.Join(dir, "connectors.gob"))
	if err != nil {
		b.Fatal(err)
	}
	if err := gob.NewEncoder(f).Encode(benchSetup{Host: strings.TrimPrefix(e.url, "https://"), Root: e.srv.Service.Authority.Root.Cert.Raw, Connectors: ids}); err != nil {
		b.Fatal(err)
	}
	f.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchClientEnv+"="+f.Name())
	cmd.Stderr = os.Stderr
	in, _ := cmd.StdinPipe()
	outPipe, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer cmd.Wait()
	defer in.Close()
	out := bufio.NewScanner(outPipe)
	out.Buffer(nil, 1<<20)
	if !out.Scan() || out.Text() != "ready" {
		b.Fatalf("the connectors' process did not connect: %q %v", out.Text(), out.Err())
	}
	var total int
	var elapsed time.Duration
	var lat []time.Duration
	for b.Loop() {
		fmt.Fprintln(in, "go")
		if !out.Scan() {
			b.Fatalf("the connectors' process ended: %v", out.Err())
		}
		var r benchRound
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			b.Fatalf("connectors' process answered %q: %v", out.Text(), err)
		}
		if r.Failed > 0 || r.OK != n*heartbeatRounds {
			b.Fatalf("%d heartbeats answered 200, %d failed, of %d; the first failure: %s", r.OK, r.Failed, n*heartbeatRounds, r.FirstError)
		}
		total += r.OK
		elapsed += r.Elapsed
		lat = append(lat, r.Latencies...)
	}
	in.Close()
	b.ReportMetric(float64(total)/elapsed.Seconds(), "heartbeats/s")
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(0, "ns/op")

	// Every connector's last heartbeat reached the database.
	if err := e.srv.Service.Store.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	cs, err := e.admin.Connectors(context.Background(), "")
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range cs {
		if c.Health != cpapi.HealthHealthy || c.Version != "1.4.2" || len(c.Addresses) != 1 {
			b.Fatalf("connector %s after the benchmark: health %q version %q addresses %v", c.Name, c.Health, c.Version, c.Addresses)
		}
	}
	// Revocation is immediate despite the cache.
	id := ids[7]
	if _, err := e.admin.RevokeConnector(context.Background(), id.Name); err != nil {
		b.Fatal(err)
	}
	c, err := dialConnector(benchSetup{Host: strings.TrimPrefix(e.url, "https://"), Root: e.srv.Service.Authority.Root.Cert.Raw}, id)
	if err != nil {
		b.Fatal(err)
	}
	defer c.conn.Close()
	if err := c.do(heartbeatRequest(7, "1.4.2")); err == nil || !strings.Contains(err.Error(), "403") {
		b.Fatalf("heartbeat of a revoked connector: %v, want 403", err)
	}
}

const (
	benchConnectors = 10000
	heartbeatRounds = 5
	benchClientEnv  = "OUTPOST_BENCH_HEARTBEAT_CLIENT"
)

// benchSetup is what the connectors' process gets.
type benchSetup struct {
	Host       string
	Root       []byte // DER
	Connectors []benchIdentity
}

type benchIdentity struct {
	Name  string
	Chain [][]byte // DER: leaf, signing CA
	Key   []byte   // PKCS#8
}

// benchRound is the connectors' process's report of one iteration.
type benchRound struct {
	OK, Failed int
	FirstError string
	Elapsed    time.Duration
	Latencies  []time.Duration
}

func heartbeatRequest(i int, version string) []byte {
	bb, _ := json.Marshal(cpapi.HeartbeatRequest{Fingerprint: fp(i), Version: version, Uptime: int64(i), Addresses: []string{fmt.Sprintf("10.%d.%d.%d/8", i>>16&255, i>>8&255, i&255)}, Skew: 0.002})
	return fmt.Appendf(nil, "POST %s HTTP/1.1\r\nHost: cp\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", cpapi.PathHeartbeat, len(bb), bb)
}

// benchConn is one simulated connector's connection.
type benchConn struct {
	conn *tls.Conn
	r    *bufio.Reader
}

func dialConnector(s benchSetup, id benchIdentity) (*benchConn, error) {
	key, err := x509.ParsePKCS8PrivateKey(id.Key)
	if err != nil {
		return nil, err
	}
	root, err := x509.ParseCertificate(s.Root)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	tc, err := tls.Dial("tcp", s.Host, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1",
		Certificates: []tls.Certificate{{Certificate: id.Chain, PrivateKey: key}}})
	if err != nil {
		return nil, err
	}
	return &benchConn{conn: tc, r: bufio.NewReaderSize(tc, 1024)}, nil
}

// do sends one prepared request and reads the answer; a status other than
// 200 is an error.
func (c *benchConn) do(req []byte) error {
	if _, err := c.conn.Write(req); err != nil {
		return err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("answer %s", resp.Status)
	}
	return nil
}

// heartbeatClient is the connectors' process of BenchmarkHeartbeat: it
// connects every connector (each sends a first heartbeat, as the server
// closes a connection without a request within ReadHeaderTimeout), says
// "ready", and for each "go" on stdin sends heartbeatRounds heartbeats
// per connector over 512 workers and answers a benchRound.
func heartbeatClient(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	var s benchSetup
	err = gob.NewDecoder(f).Decode(&s)
	f.Close()
	if err != nil {
		return err
	}
	n := len(s.Connectors)
	conns := make([]*benchConn, n)
	reqs := make([][]byte, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	for range 4 * runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				c, err := dialConnector(s, s.Connectors[i])
				if err == nil {
					err = c.do(heartbeatRequest(i, "1.4.1"))
				}
				if err != nil {
					select {
					case errc <- fmt.Errorf("connector %d: %w", i, err):
					default:
					}
					return
				}
				conns[i], reqs[i] = c, heartbeatRequest(i, "1.4.2")
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
	}
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		lat := make([]time.Duration, n*heartbeatRounds)
		var next atomic.Int64
		var ok, failed atomic.Int64
		var first atomic.Value
		start := time.Now()
		for range 512 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					j := int(next.Add(1)) - 1
					if j >= len(lat) {
						return
					}
					// Round-robin over connectors: one request at a time
					// on each connection.
					i := j % n
					t0 := time.Now()
					if err := conns[i].do(reqs[i]); err != nil {
						failed.Add(1)
						first.CompareAndSwap(nil, fmt.Sprintf("connector %d: %v", i, err))
						continue
					}
					lat[j] = time.Since(t0)
					ok.Add(1)
				}
			}()
		}
		wg.Wait()
		r := benchRound{OK: int(ok.Load()), Failed: int(failed.Load()), Elapsed: time.Since(start), Latencies: lat}
		if v, _ := first.Load().(string); v != "" {
			r.FirstError = v
		}
		b, _ := json.Marshal(r)
		fmt.Printf("%s\n", b)
	}
	return in.Err()
}

// benchIdentities records n connectors through the store, their
// certificates signed by the signing CA directly (no CSR to make and
// check), each for its own ECDSA P-256 key.
func benchIdentities(b *testing.B, e *env, n int) []benchIdentity {
	b.Helper()
	ctx := context.Background()
	e.key("Bench", int64(n), "never")
	k := e.keyInfo("Bench")
	ca := e.srv.Service.Authority.Signing[k.SigningCA]
	ids := make([]benchIdentity, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	for range 64 { // enough to fill the store's group commits
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				if err == nil {
					var iss *pki.Issued
					now := e.clock.Now()
					var c store.Connector
					c, err = e.srv.Service.Store.Enroll(ctx, store.Enrollment{
						KeyID: k.ID, Generation: k.Generation, Fingerprint: fp(i), PubKeyHash: fmt.Sprintf("bench-%d", i), Nonce: "bench", Now: now,
						Sign: func(name string) (string, string, time.Time, error) {
							var err error
							if iss, err = ca.Sign(&pki.CSR{Req: &x509.CertificateRequest{PublicKey: &key.PublicKey}}, name, now); err != nil {
								return "", "", time.Time{}, err
							}
							return iss.Serial, string(iss.ChainPEM), iss.Cert.NotAfter, nil
						},
					})
					if err == nil {
						der, _ := x509.MarshalPKCS8PrivateKey(key)
						ids[i] = benchIdentity{Name: c.Name, Chain: [][]byte{iss.Cert.Raw, ca.Cert.Raw}, Key: der}
					}
				}
				if err != nil {
					select {
					case errc <- fmt.Errorf("connector %d: %w", i, err):
					default:
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		b.Fatal(err)
	default:
	}
	return ids
}
