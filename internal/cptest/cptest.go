// Package cptest starts the real control plane in-process on loopback for
// tests of the packages that talk to it (the connector agent, the deployer,
// the CLI, the web console): one way to do it, stopped when the test ends.
// It is test support, not a fake: what answers is controlplane.Server.
package cptest

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/controlplane"
	"github.com/outpost-appliance/outpost/cpclient"
)

// Options tune the server; the zero value is the server's defaults.
type Options struct {
	Now               func() time.Time
	HeartbeatInterval time.Duration
	// ReleaseKeys and UpgradeTimeout are controlplane.Config's.
	ReleaseKeys    []ed25519.PublicKey
	UpgradeTimeout time.Duration
	// Mount is called with the opened server and its data directory
	// before it serves (e.g. to mount the web console on its handler).
	Mount func(srv *controlplane.Server, dataDir string)
}

// Server is a running control plane.
type Server struct {
	*controlplane.Server
	Addr      string          // 127.0.0.1:PORT, also the hostname keys name
	Dir       string          // its data directory
	AdminConf string          // DIR/admin.conf
	Config    cpclient.Config // admin.conf, pointing at Addr
	Admin     *cpclient.Client
}

// Start opens a control plane in a fresh data directory and serves it on
// 127.0.0.1 until the test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "cp")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	srv, err := controlplane.Open(context.Background(), controlplane.Config{
		DataDir: dir, Hostnames: []string{ln.Addr().String()}, Log: slog.New(slog.DiscardHandler),
		Now: o.Now, HeartbeatInterval: o.HeartbeatInterval, ReleaseKeys: o.ReleaseKeys, UpgradeTimeout: o.UpgradeTimeout,
	}, ln.Addr())
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	if o.Mount != nil {
		o.Mount(srv, dir)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done; srv.Close() })
	s := &Server{Server: srv, Addr: ln.Addr().String(), Dir: dir, AdminConf: filepath.Join(dir, controlplane.AdminConfFile)}
	if s.Config, err = cpclient.LoadConfig(s.AdminConf); err != nil {
		t.Fatal(err)
	}
	s.Config.Server = "https://" + s.Addr
	if s.Admin, err = cpclient.New(s.Config); err != nil {
		t.Fatal(err)
	}
	return s
}
