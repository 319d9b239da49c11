// Package enrolltest is a stand-in control plane for first boot's tests: an
// in-process TLS server that answers only the enrollment endpoint, keeping
// the contract of issue 3 (the same CSR public key again returns the same
// connector and consumes no use; refusals as cpapi.Error), and that injects
// what the real server cannot be asked for: a lost answer (DropFirst), any
// refusal (Refuse), a slow answer (Delay).
//
// It keeps firstboot's tests fast and free of the control plane; the tests
// that need the real `outpost server` (cmd/outpost-firstboot's namespace
// tests: the crash points, a second appliance refused) run it.
package enrolltest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/provkey"
)

// Options configure a Server.
type Options struct {
	CAName   string // the CA's common name (default "outpost root")
	MaxUses  int
	IPs      []net.IP // serving certificate IP SANs (default 127.0.0.1)
	DNSNames []string
	// Listener to serve on (default: loopback).
	Listener net.Listener
	// DropFirst closes the connection after counting the first
	// enrollment, as if the response were lost.
	DropFirst bool
	// Refuse answers every request with this refusal code (e.g.
	// "key_expired", "key_revoked", "invalid_key").
	Refuse string
	// Delay holds every answer back this long after the use is counted,
	// so a test can kill the client while the server has answered nothing.
	Delay time.Duration
}

// Server is a TLS enrollment endpoint.
type Server struct {
	CA     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	HTTP   *httptest.Server
	opts   Options
	mu     sync.Mutex
	byPub  map[string]string
	uses   int
	reqs   int
	nonces []string
}

// Nonces returns the nonces of all requests, in order.
func (s *Server) Nonces() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.nonces...)
}

// CA returns a self-signed CA certificate and its key.
func CA(t testing.TB, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

// New starts a server; it is closed when the test ends.
func New(t testing.TB, o Options) *Server {
	t.Helper()
	if o.CAName == "" {
		o.CAName = "outpost root"
	}
	if o.IPs == nil && o.DNSNames == nil {
		o.IPs = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	s := &Server{opts: o, byPub: map[string]string{}}
	s.CA, s.caKey = CA(t, o.CAName)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "control plane"},
		IPAddresses: o.IPs, DNSNames: o.DNSNames, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.CA, &key.PublicKey, s.caKey)
	if err != nil {
		t.Fatal(err)
	}
	s.HTTP = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	if o.Listener != nil {
		s.HTTP.Listener.Close()
		s.HTTP.Listener = o.Listener
	}
	s.HTTP.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der, s.CA.Raw}, PrivateKey: key}}}
	s.HTTP.StartTLS()
	t.Cleanup(s.HTTP.Close)
	return s
}

// Key returns a provisioning key for host (HOST:PORT) pinned to pin.
func Key(t testing.TB, host string, pin provkey.Pin) provkey.Key {
	t.Helper()
	k, err := provkey.Generate(host, pin, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Uses is the number of uses counted; Requests the number of requests;
// Distinct the number of distinct CSR public keys enrolled.
func (s *Server) Uses() int     { s.mu.Lock(); defer s.mu.Unlock(); return s.uses }
func (s *Server) Requests() int { s.mu.Lock(); defer s.mu.Unlock(); return s.reqs }
func (s *Server) Distinct() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.byPub) }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != cpapi.PathEnroll || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	var req cpapi.EnrollRequest
	json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req)
	refuse := func(status int, code, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(&cpapi.Error{Code: code, Message: msg})
	}
	blk, _ := pem.Decode([]byte(req.CSR))
	if blk == nil {
		refuse(400, cpapi.CodeBadCSR, "the CSR is not PEM")
		return
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil || csr.CheckSignature() != nil {
		refuse(400, cpapi.CodeBadCSR, "the CSR does not parse or its signature is wrong")
		return
	}
	pub, _ := x509.MarshalPKIXPublicKey(csr.PublicKey)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs++
	s.nonces = append(s.nonces, req.Nonce)
	if s.opts.Refuse != "" {
		status := http.StatusForbidden
		if s.opts.Refuse == cpapi.CodeInvalidKey {
			status = http.StatusUnauthorized
		}
		refuse(status, s.opts.Refuse, "Melbourne: refused by the test control plane ("+s.opts.Refuse+")")
		return
	}
	name, seen := s.byPub[string(pub)]
	if !seen {
		if s.uses >= s.opts.MaxUses {
			refuse(http.StatusConflict, cpapi.CodeKeyExhausted, fmt.Sprintf("Melbourne has been used %d of %d times; raise its maximum uses or use another key", s.uses, s.opts.MaxUses))
			return
		}
		s.uses++
		name = fmt.Sprintf("Melbourne-%d", s.uses)
		s.byPub[string(pub)] = name
		if s.opts.DropFirst && s.uses == 1 {
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
	}
	if s.opts.Delay > 0 {
		s.mu.Unlock()
		time.Sleep(s.opts.Delay)
		s.mu.Lock()
	}
	der, _ := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, s.CA, csr.PublicKey, s.caKey)
	chain := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})) + string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.CA.Raw}))
	json.NewEncoder(w).Encode(cpapi.EnrollResponse{Name: name, Group: "Melbourne", Certificate: chain})
}
