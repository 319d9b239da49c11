package controlplane_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/internal/pgtest"
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
