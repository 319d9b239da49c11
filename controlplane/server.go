package controlplane

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-appliance/outpost/controlplane/store"
	"github.com/outpost-appliance/outpost/cpclient"
	"github.com/outpost-appliance/outpost/internal/atomicfile"
	"github.com/outpost-appliance/outpost/pki"
	"github.com/outpost-appliance/outpost/provkey"
)

// Config configures a control plane process.
type Config struct {
	DataDir   string   // PKI, secrets, admin.conf and (by default) the SQLite database
	Hostnames []string // names appliances use to reach the server; the first goes into keys
	Database  string   // postgres://…, sqlite:PATH or PATH.db (store.CheckDatabase); empty: SQLite in DataDir
	Log       *slog.Logger
	Now       func() time.Time // nil: time.Now
	// HeartbeatInterval is how often connectors are asked to heartbeat,
	// and how often the rollout scheduler runs; zero: DefaultInterval.
	HeartbeatInterval time.Duration
	// ReleaseKeys are the public release keys whose bundles may be
	// published; none: publishing is refused (no_release_key).
	ReleaseKeys []ed25519.PublicKey
	// UpgradeTimeout is how long a connector ordered to upgrade has to
	// come back healthy on the new version; zero: DefaultUpgradeTimeout.
	UpgradeTimeout time.Duration
}

// Server is a control plane ready to serve on a listener.
type Server struct {
	Service *Service
	TLS     *tls.Config
	Handler http.Handler
	URL     string // https://KeyHost
	// AdminToken is admin.conf's token (the web console signs in with it).
	AdminToken string
	// AdminURL is the server's URL as written in admin.conf.
	AdminURL string
	log      *slog.Logger
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
	if err := CheckHostnames(cfg.Hostnames); err != nil {
		return nil, err
	}
	if cfg.Database != "" {
		if err := store.CheckDatabase(cfg.Database); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	if err := checkPrivate(cfg.DataDir, log); err != nil {
		return nil, err
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
	}, func(b []byte) bool {
		raw, err := base64.RawURLEncoding.DecodeString(string(b))
		return err == nil && len(raw) == 32
	})
	if err != nil {
		return nil, err
	}
	sealKey, err := secretFile(filepath.Join(cfg.DataDir, sealFile), func(b []byte) []byte { return b }, func(b []byte) bool { return len(b) == 32 })
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
	if cfg.HeartbeatInterval > 0 {
		svc.Interval = cfg.HeartbeatInterval
	}
	svc.ReleaseKeys = cfg.ReleaseKeys
	svc.ReleaseDir = filepath.Join(cfg.DataDir, releasesDir)
	svc.UpgradeTimeout = cfg.UpgradeTimeout
	if err := svc.warnOrphanedKeys(ctx); err != nil {
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
	srv.AdminToken = string(token)
	rootPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: auth.Root.Cert.Raw})
	adminURL := srv.URL
	if len(cfg.Hostnames) == 0 && tcp.IP.IsUnspecified() {
		adminURL = "https://127.0.0.1:" + strconv.Itoa(tcp.Port)
	}
	srv.AdminURL = adminURL
	if err := writeAdminConf(cfg.DataDir, cpclient.Config{Server: adminURL, Token: string(token), CA: string(rootPEM)}, log); err != nil {
		st.Close()
		return nil, err
	}
	return srv, nil
}

// CheckHostnames checks --hostname values: NAME or NAME:PORT (a DNS name
// or an IP address, IPv6 in brackets when a port follows), as keys carry
// them.
func CheckHostnames(hosts []string) error {
	var problems []string
	for _, h := range hosts {
		if a, err := netip.ParseAddr(h); err == nil && a.Is6() && a.Zone() == "" {
			continue // a bare IPv6 address; keys bracket it
		}
		if err := provkey.ValidateHost(h); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("--hostname: %s; use NAME or NAME:PORT, as in cp.example.com or cp.example.com:8443", strings.Join(problems, "; "))
	}
	return nil
}

// warnOrphanedKeys logs, per host, how many usable keys name a host this
// server does not answer to: appliances enrolling with them get wrong_host
// (a restart with another --hostname).
func (s *Service) warnOrphanedKeys(ctx context.Context) error {
	keys, err := s.Store.Keys(ctx, store.KeyFilter{State: store.KeyActive})
	if err != nil {
		return err
	}
	orphans := map[string]int{}
	for _, k := range keys {
		if !s.acceptsHost(k.Host) {
			orphans[k.Host]++
		}
	}
	hosts := make([]string, 0, len(orphans))
	for h := range orphans {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		s.Log.Warn(fmt.Sprintf("%d active keys name the control plane %s, which this server does not answer to; appliances enrolling with them will be refused (wrong_host). Add --hostname %s, or create new keys", orphans[h], h, h),
			"keys", orphans[h], "host", h, "key_host", s.KeyHost)
	}
	return nil
}

// adminConfWritten remembers what the server last wrote to admin.conf, so
// that a later start changes only the fields an admin has not edited.
const adminConfWritten = ".admin.conf.written"

// writeAdminConf writes DATA/admin.conf when missing. When it exists, each
// field (server, token, ca) is brought up to date only if it still holds
// what the server last wrote: an admin's edit (a server URL that resolves
// where --hostname does not) is kept, and said so in the log.
func writeAdminConf(dir string, want cpclient.Config, log *slog.Logger) error {
	path, memo := filepath.Join(dir, AdminConfFile), filepath.Join(dir, adminConfWritten)
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		if err := cpclient.WriteConfig(path, want); err != nil {
			return err
		}
		return cpclient.WriteConfig(memo, want)
	}
	cur, err := cpclient.LoadConfig(path)
	if err != nil {
		log.Warn("admin.conf is not readable as an admin config; leaving it as it is", "file", path, "err", err)
		return nil
	}
	last, err := cpclient.LoadConfig(memo)
	if err != nil { // written by a server that rewrote it on every start
		last = cur
	}
	next := cur
	for _, f := range []struct {
		name            string
		cur, last, want string
		set             func(string)
	}{
		{"server", cur.Server, last.Server, want.Server, func(v string) { next.Server = v }},
		{"token", cur.Token, last.Token, want.Token, func(v string) { next.Token = v }},
		{"ca", cur.CA, last.CA, want.CA, func(v string) { next.CA = v }},
	} {
		switch {
		case f.cur == f.want:
		case f.cur == f.last:
			f.set(f.want)
		default:
			log.Info("admin.conf was edited; keeping the admin's value", "file", path, "field", f.name)
		}
	}
	if next != cur {
		if err := cpclient.WriteConfig(path, next); err != nil {
			return err
		}
	}
	return cpclient.WriteConfig(memo, want)
}

// secretFile reads a 0600 file that valid accepts, or creates it from 32
// random bytes encoded by enc. Creation is atomic and exclusive: the
// secret is written whole under a temporary name (atomicfile) and linked
// into place only if no other process linked one first, so a crash never
// leaves an empty or partial secret and two first starts agree on one.
func secretFile(path string, enc func([]byte) []byte, valid func([]byte) bool) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return checkSecret(path, b, valid)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	b = enc(raw)
	tmp := fmt.Sprintf("%s.new-%x", path, raw[:4])
	if err := atomicfile.WriteFile(tmp, b, 0o600); err != nil {
		return nil, err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); errors.Is(err, os.ErrExist) { // another process created it first
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		return checkSecret(path, b, valid)
	} else if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	return b, nil
}

func checkSecret(path string, b []byte, valid func([]byte) bool) ([]byte, error) {
	if !valid(b) {
		what := "damaged"
		if len(b) == 0 {
			what = "empty"
		}
		return nil, fmt.Errorf("%s is %s (%d bytes), perhaps left by a crash or an interrupted copy: restore it from a backup of the data directory; only if this server never issued a key, delete it and start again", path, what, len(b))
	}
	return b, nil
}

// checkPrivate refuses a data directory whose secrets (admin token,
// sealing key, CA private keys, admin.conf) or the directories holding
// them are open to group or others, naming each and the chmod that fixes
// it. A directory that holds no secret yet (a first start in an existing
// directory) is tightened to 0700 instead.
func checkPrivate(dir string, log *slog.Logger) error {
	secrets := []string{filepath.Join(dir, tokenFile), filepath.Join(dir, sealFile), filepath.Join(dir, AdminConfFile), filepath.Join(dir, adminConfWritten)}
	dirs := []string{dir}
	filepath.WalkDir(filepath.Join(dir, pkiDir), func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
		case d.IsDir():
			dirs = append(dirs, p)
		case strings.HasSuffix(p, ".key"):
			secrets = append(secrets, p)
		}
		return nil
	})
	var problems []string
	held := 0
	for _, p := range secrets {
		st, err := os.Stat(p)
		if err != nil {
			continue
		}
		held++
		if m := st.Mode().Perm(); m&0o077 != 0 {
			problems = append(problems, fmt.Sprintf("%s is mode %04o, readable by group or others: run chmod 600 %s", p, m, p))
		}
	}
	for _, p := range dirs {
		st, err := os.Stat(p)
		if err != nil {
			continue
		}
		if m := st.Mode().Perm(); m&0o077 != 0 {
			if p == dir && held == 0 {
				if err := os.Chmod(dir, 0o700); err != nil {
					return fmt.Errorf("data directory %s is mode %04o and cannot be made private: %w; run chmod 700 %s", dir, m, err, dir)
				}
				log.Info("made the data directory private", "dir", dir, "mode", "0700", "was", fmt.Sprintf("%04o", m))
				continue
			}
			problems = append(problems, fmt.Sprintf("directory %s is mode %04o, open to group or others, and holds secrets: run chmod 700 %s", p, m, p))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("refusing to start with secrets others can read:\n  %s", strings.Join(problems, "\n  "))
	}
	return nil
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
	sched, stopSched := context.WithCancel(ctx)
	schedDone := make(chan struct{})
	go func() { s.schedule(sched); close(schedDone) }()
	defer func() { stopSched(); <-schedDone }()
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

// schedule runs the rollout scheduler every heartbeat interval until ctx
// is done.
func (s *Server) schedule(ctx context.Context) {
	t := time.NewTicker(s.Service.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.Service.Rollouts(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("rollout scheduler", "err", err)
			}
		}
	}
}

// Close releases the database.
func (s *Server) Close() error { return s.Service.Store.Close() }
