package controlplane

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-appliance/outpost/controlplane/store"
	"github.com/outpost-appliance/outpost/cpclient"
	"github.com/outpost-appliance/outpost/pki"
	"github.com/outpost-appliance/outpost/provkey"
)

// Config configures a control plane process.
type Config struct {
	DataDir   string   // PKI, secrets, admin.conf and (by default) the SQLite database
	Hostnames []string // names appliances use to reach the server; the first goes into keys
	Database  string   // postgres://… ; empty: SQLite in DataDir
	Log       *slog.Logger
	Now       func() time.Time // nil: time.Now
}

// Server is a control plane ready to serve on a listener.
type Server struct {
	Service *Service
	TLS     *tls.Config
	Handler http.Handler
	URL     string // https://KeyHost
	log     *slog.Logger
}

// Files in the data directory.
const (
	AdminConfFile = "admin.conf"
	tokenFile     = "admin.token"
	sealFile      = "secrets.key"
	pkiDir        = "pki"
	sqliteFile    = "outpost.db"
)

// Open prepares a control plane for addr (the bound listen address): on
// first start it creates the CAs, the admin token and the secret-sealing
// key in DataDir; every start writes DataDir/admin.conf.
func Open(ctx context.Context, cfg Config, addr net.Addr) (*Server, error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	if cfg.DataDir == "" {
		return nil, errors.New("no data directory; pass --data DIR")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	auth, err := pki.Load(filepath.Join(cfg.DataDir, pkiDir))
	if errors.Is(err, os.ErrNotExist) {
		if auth, err = pki.NewAuthority(now()); err == nil {
			err = auth.Save(filepath.Join(cfg.DataDir, pkiDir))
		}
		if err == nil {
			log.Info("created root CA and signing CA", "dir", filepath.Join(cfg.DataDir, pkiDir), "pin", provkey.PinOf(auth.Root.Cert).String())
		}
	}
	if err != nil {
		return nil, fmt.Errorf("data directory %s: %w", cfg.DataDir, err)
	}
	token, err := secretFile(filepath.Join(cfg.DataDir, tokenFile), func(b []byte) []byte {
		return []byte(base64.RawURLEncoding.EncodeToString(b))
	})
	if err != nil {
		return nil, err
	}
	sealKey, err := secretFile(filepath.Join(cfg.DataDir, sealFile), func(b []byte) []byte { return b })
	if err != nil {
		return nil, err
	}

	tcp, _ := addr.(*net.TCPAddr)
	if tcp == nil {
		return nil, fmt.Errorf("listen address %v is not TCP", addr)
	}
	// A hostname may carry the port appliances use (behind a load
	// balancer or port mapping): keys then name exactly that.
	var names, explicit []string
	for _, h := range cfg.Hostnames {
		if host, port, err := net.SplitHostPort(h); err == nil {
			if _, err := strconv.Atoi(port); err == nil {
				names = append(names, host)
				explicit = append(explicit, h)
				continue
			}
		}
		names = append(names, h)
	}
	if tcp.IP.IsUnspecified() {
		names = append(names, "localhost", "127.0.0.1", "::1")
		if h, err := os.Hostname(); err == nil && h != "" {
			names = append(names, h)
		}
	} else {
		names = append(names, tcp.IP.String())
	}
	keyHost := names[0]
	if strings.Contains(keyHost, ":") {
		keyHost = "[" + keyHost + "]"
	}
	if tcp.Port != 443 {
		keyHost += ":" + strconv.Itoa(tcp.Port)
	}
	if len(cfg.Hostnames) > 0 && len(explicit) > 0 && cfg.Hostnames[0] == explicit[0] {
		keyHost = explicit[0]
	}
	if len(cfg.Hostnames) == 0 {
		log.Warn("no --hostname given: new keys name " + keyHost + ", which appliances may not reach; pass --hostname NAME")
	}
	certPEM, keyPEM, err := auth.ServingCert(names, now())
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}

	dsn := cfg.Database
	if dsn == "" {
		dsn = filepath.Join(cfg.DataDir, sqliteFile)
	}
	st, err := store.Open(ctx, dsn)
	if err != nil {
		return nil, err
	}
	pin := provkey.PinOf(auth.Root.Cert).String()
	if got, err := st.InitSetting(ctx, "ca_pin", pin); err != nil {
		st.Close()
		return nil, err
	} else if got != pin {
		st.Close()
		return nil, fmt.Errorf("the database belongs to a control plane whose CA pin is %s, but %s holds CA %s; servers sharing a database must share one data directory (copy it from the first server)", got, cfg.DataDir, pin)
	}
	svc, err := NewService(st, auth, sealKey, keyHost, append(explicit, HostsFor(names, tcp.Port)...), log, now)
	if err != nil {
		st.Close()
		return nil, err
	}
	srv := &Server{
		Service: svc,
		TLS: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.VerifyClientCertIfGiven,
			ClientCAs:    auth.RootPool(),
		},
		URL: "https://" + keyHost,
		log: log,
	}
	srv.Handler = Handler(svc, string(token))
	rootPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: auth.Root.Cert.Raw})
	adminURL := srv.URL
	if len(cfg.Hostnames) == 0 && tcp.IP.IsUnspecified() {
		adminURL = "https://127.0.0.1:" + strconv.Itoa(tcp.Port)
	}
	if err := cpclient.WriteConfig(filepath.Join(cfg.DataDir, AdminConfFile), cpclient.Config{Server: adminURL, Token: string(token), CA: string(rootPEM)}); err != nil {
		st.Close()
		return nil, err
	}
	return srv, nil
}

// secretFile reads a 0600 file, or creates it from 32 random bytes encoded
// by enc.
func secretFile(path string, enc func([]byte) []byte) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return b, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	b = enc(raw)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) { // another process created it first
		return os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return b, nil
}

// Serve serves HTTPS on ln until ctx is done, then shuts down gracefully,
// letting requests in flight finish (up to 10 s).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.Handler,
		TLSConfig:         s.TLS,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(tls.NewListener(ln, s.TLS)) }()
	s.log.Info("control plane serving", "addr", ln.Addr().String(), "url", s.URL)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := hs.Shutdown(sctx)
	<-errc
	return err
}

// Close releases the database.
func (s *Server) Close() error { return s.Service.Store.Close() }
