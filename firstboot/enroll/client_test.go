package enroll

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/provkey"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T, cn string, parent *testCA) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	signer, signKey := tmpl, key
	if parent != nil {
		signer, signKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{c, key}
}

// serve starts a TLS server whose chain is leaf (for 127.0.0.1) + chain.
func serve(t *testing.T, h http.Handler, issuer *testCA, chain ...*testCA) *httptest.Server {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(12 * time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer.cert, &key.PublicKey, issuer.key)
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	for _, c := range chain {
		tc.Certificate = append(tc.Certificate, c.cert.Raw)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{tc}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func keyFor(t *testing.T, srv *httptest.Server, pin provkey.Pin) provkey.Key {
	t.Helper()
	k, err := provkey.Generate(strings.TrimPrefix(srv.URL, "https://"), pin, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

type recorder struct {
	mu   sync.Mutex
	reqs []map[string]string
}

func (r *recorder) handler(answers ...func(w http.ResponseWriter)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var m map[string]string
		json.NewDecoder(req.Body).Decode(&m)
		r.mu.Lock()
		n := len(r.reqs)
		r.reqs = append(r.reqs, m)
		r.mu.Unlock()
		answers[min(n, len(answers)-1)](w)
	})
}

func status(code int, body string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		w.Write([]byte(body))
	}
}

func identity(t *testing.T) *Identity {
	fp, _ := Fingerprint(net.HardwareAddr{0, 0x50, 0x56, 1, 2, 3}, "4C4C4544-0000")
	id, err := NewIdentity("conn", fp, nil)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestEnrollRetriesWithSameCSRAndNonce(t *testing.T) {
	root := newCA(t, "outpost root", nil)
	signing := newCA(t, "Connector", root)
	var rec recorder
	okBody, _ := json.Marshal(cpapi.EnrollResponse{Name: "Melbourne-1", Group: "Melbourne", Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: signing.cert.Raw}))})
	srv := serve(t, rec.handler(status(503, "busy"), status(502, ""), status(200, string(okBody))), signing, signing, root)
	var slept []time.Duration
	c := &Client{
		Key:   keyFor(t, srv, provkey.PinOf(root.cert)),
		Sleep: func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil },
	}
	id := identity(t)
	res, err := c.Enroll(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if res.Name != "Melbourne-1" || res.Group != "Melbourne" {
		t.Errorf("result = %+v", res)
	}
	if len(rec.reqs) != 3 || len(slept) != 2 {
		t.Fatalf("requests = %d, sleeps = %v; want 3 and 2", len(rec.reqs), slept)
	}
	for i, r := range rec.reqs {
		if r["nonce"] != id.Nonce || r["csr"] != string(id.CSRPEM) || r["fingerprint"] != "mac=00:50:56:01:02:03;uuid=4c4c4544-0000" || r["key"] != c.Key.Reveal() {
			t.Errorf("request %d differs from the first: %v", i, r["nonce"])
		}
	}
	if slept[0] < backoffBase/2 || slept[0] > backoffBase || slept[1] < backoffBase || slept[1] > 2*backoffBase {
		t.Errorf("backoff = %v, want jittered 1s then 2s steps", slept)
	}
	if exp, err := res.NotAfter(); err != nil || exp.IsZero() {
		t.Errorf("NotAfter = %v, %v", exp, err)
	}
}

func TestEnrollPinOnIntermediate(t *testing.T) {
	root := newCA(t, "outpost root", nil)
	signing := newCA(t, "Connector", root)
	var rec recorder
	srv := serve(t, rec.handler(status(200, `{"name":"a-1","group":"a","certificate":"x"}`)), signing, signing)
	c := &Client{Key: keyFor(t, srv, provkey.PinOf(signing.cert)), Attempts: 1}
	if _, err := c.Enroll(context.Background(), identity(t)); err != nil {
		t.Fatal(err)
	}
}

func TestEnrollRefusal(t *testing.T) {
	root := newCA(t, "outpost root", nil)
	var rec recorder
	srv := serve(t, rec.handler(status(409, `{"error":"key_exhausted","message":"Melbourne has been used 2 of 2 times; raise its maximum uses or use another key"}`)), root, root)
	c := &Client{Key: keyFor(t, srv, provkey.PinOf(root.cert)), Sleep: func(context.Context, time.Duration) error {
		t.Error("a refusal must not be retried")
		return nil
	}}
	_, err := c.Enroll(context.Background(), identity(t))
	var refusal *cpapi.Error
	if !errors.As(err, &refusal) || refusal.Code != cpapi.CodeKeyExhausted || !cpapi.IsCode(err, cpapi.CodeKeyExhausted) {
		t.Fatalf("err = %v, want key_exhausted", err)
	}
	var ref *RefusedError
	if !errors.As(err, &ref) || ref.Status != 409 {
		t.Fatalf("err = %#v, want a RefusedError with status 409", err)
	}
	want := "enrollment refused: key_exhausted — Melbourne has been used 2 of 2 times; raise its maximum uses or use another key"
	if err.Error() != want {
		t.Errorf("err = %q\nwant  %q", err, want)
	}
	if len(rec.reqs) != 1 {
		t.Errorf("requests = %d", len(rec.reqs))
	}
}

func TestInterceptionDetectedKeyNotSent(t *testing.T) {
	real := newCA(t, "outpost root", nil)
	mitm := newCA(t, "Corp SSL Inspection CA", nil)
	var rec recorder
	srv := serve(t, rec.handler(status(200, "{}")), mitm, mitm)
	c := &Client{Key: keyFor(t, srv, provkey.PinOf(real.cert))}
	_, err := c.Enroll(context.Background(), identity(t))
	var ie *InterceptionError
	if !errors.As(err, &ie) {
		t.Fatalf("err = %v, want an InterceptionError", err)
	}
	want := `SSL inspection detected: the certificate for 127.0.0.1 is issued by "Corp SSL Inspection CA"; bypass SSL inspection for connector traffic`
	if err.Error() != want {
		t.Errorf("err = %q\nwant  %q", err, want)
	}
	if len(rec.reqs) != 0 {
		t.Errorf("the key reached the intercepting server (%d requests)", len(rec.reqs))
	}
}

func TestClockWrongIsPermanentAndExplained(t *testing.T) {
	root := newCA(t, "outpost root", nil)
	var rec recorder
	srv := serve(t, rec.handler(status(200, "{}")), root, root)
	c := &Client{
		Key: keyFor(t, srv, provkey.PinOf(root.cert)),
		Now: func() time.Time { return time.Now().AddDate(-3, 0, 0) },
	}
	_, err := c.Enroll(context.Background(), identity(t))
	if err == nil || !strings.Contains(err.Error(), "this appliance's clock") || !strings.Contains(err.Error(), "NTP") {
		t.Fatalf("err = %v", err)
	}
	if len(rec.reqs) != 0 {
		t.Error("request sent despite failed verification")
	}
}

func TestNetworkErrorRetriedUntilAttempts(t *testing.T) {
	root := newCA(t, "outpost root", nil)
	srv := serve(t, http.NotFoundHandler(), root, root)
	k := keyFor(t, srv, provkey.PinOf(root.cert))
	srv.Close()
	n := 0
	c := &Client{Key: k, Attempts: 3, Sleep: func(context.Context, time.Duration) error { n++; return nil }}
	_, err := c.Enroll(context.Background(), identity(t))
	if err == nil || !strings.Contains(err.Error(), "giving up after 3 attempts") || n != 2 {
		t.Fatalf("err = %v, sleeps = %d", err, n)
	}
	if strings.Contains(err.Error(), k.Reveal()) {
		t.Error("error contains the key")
	}
}
