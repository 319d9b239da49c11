package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/outpost-appliance/outpost/console"
	"github.com/outpost-appliance/outpost/controlplane"
	"github.com/outpost-appliance/outpost/controlplane/store"
	"github.com/outpost-appliance/outpost/cpclient"
	"github.com/outpost-appliance/outpost/release"
	"github.com/spf13/pflag"
)

type serverCmd struct {
	data      string
	listen    string
	hostnames []string
	database  string
	keys      []string
	interval  time.Duration
	timeout   time.Duration
	debug     bool
}

func (c *serverCmd) Register(fs *pflag.FlagSet) {
	fs.StringVar(&c.data, "data", envDefault("OUTPOST_DATA", ""), "data directory: CAs, admin token, admin.conf, SQLite database (env OUTPOST_DATA)")
	fs.StringVar(&c.listen, "listen", ":8443", "address to serve HTTPS on")
	fs.StringArrayVar(&c.hostnames, "hostname", nil, "name appliances use to reach this server, NAME or NAME:PORT (repeatable; the first goes into new keys)")
	fs.StringVar(&c.database, "database", envDefault("OUTPOST_DATABASE", ""), "postgres://… or postgresql://… URL, or a SQLite file as sqlite:PATH or PATH.db; default DATA/outpost.db (env OUTPOST_DATABASE)")
	fs.StringArrayVar(&c.keys, "release-key", nil, "public release key FILE.pub (PEM, from 'outpost releases keygen -o FILE') whose bundles may be published (repeatable)")
	fs.DurationVar(&c.interval, "heartbeat-interval", controlplane.DefaultInterval, "how often connectors heartbeat; one silent for 3 intervals is unreachable")
	fs.DurationVar(&c.timeout, "upgrade-timeout", controlplane.DefaultUpgradeTimeout, "how long a connector ordered to upgrade has to come back healthy on the new version before its group's rollout stops")
	fs.BoolVar(&c.debug, "debug", false, "log debug messages")
}

func (c *serverCmd) Run(ctx context.Context, s streams, args []string) error {
	if len(args) > 0 {
		return usagef("server takes no arguments (got %q)", args)
	}
	if c.data == "" {
		return usagef("missing --data DIR: where the server keeps its CAs, token and database")
	}
	if c.database != "" {
		if err := store.CheckDatabase(c.database); err != nil {
			return usagef("--database: %v", err)
		}
	}
	if err := controlplane.CheckHostnames(c.hostnames); err != nil {
		return usagef("%v", err)
	}
	if c.interval < time.Second || c.interval > time.Hour {
		return usagef("--heartbeat-interval %s: use 1s to 1h", c.interval)
	}
	if c.timeout < time.Minute {
		return usagef("--upgrade-timeout %s: use at least 1m (a connector reboots into the new version within it)", c.timeout)
	}
	keys, err := readReleaseKeys(c.keys)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if c.debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(s.Err, &slog.HandlerOptions{Level: level}))
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another server running there? choose another --listen)", c.listen, err)
	}
	defer ln.Close()
	srv, err := controlplane.Open(ctx, controlplane.Config{DataDir: c.data, Hostnames: c.hostnames, Database: c.database, Log: log, ReleaseKeys: keys,
		HeartbeatInterval: c.interval, UpgradeTimeout: c.timeout}, ln.Addr())
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		log.Info("no --release-key: publishing releases is refused until the server trusts a release key")
	}
	defer srv.Close()
	con, err := console.New(console.Config{Service: srv.Service, Token: srv.AdminToken, PasswordFile: filepath.Join(c.data, console.PasswordFile), ServerURL: srv.AdminURL, Log: log})
	if err != nil {
		return err
	}
	srv.Handler = console.Mount(srv.Handler, con)
	log.Info("web console", "url", srv.AdminURL+"/")
	log.Info("admin config", "file", filepath.Join(c.data, controlplane.AdminConfFile))
	return srv.Serve(ctx, ln)
}

// readReleaseKeys reads the --release-key files: each must hold one PEM
// Ed25519 public key.
func readReleaseKeys(files []string) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	var problems []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		k, err := release.ParsePublicKey(b)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", f, err))
			continue
		}
		keys = append(keys, k)
	}
	if len(problems) > 0 {
		return nil, usagef("--release-key: %s; give the public key FILE.pub that 'outpost releases keygen -o FILE' wrote (not the private key FILE)", strings.Join(problems, "; "))
	}
	return keys, nil
}

// adminOpts are the flags every admin command shares.
type adminOpts struct {
	config string
	server string
	json   bool
}

func (o *adminOpts) register(fs *pflag.FlagSet) {
	fs.StringVar(&o.config, "config", envDefault("OUTPOST_CONFIG", "admin.conf"), "admin config written by 'outpost server' (env OUTPOST_CONFIG)")
	fs.StringVar(&o.server, "server", envDefault("OUTPOST_SERVER", ""), "control plane URL https://HOST[:PORT], instead of the config's (env OUTPOST_SERVER)")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
}

// client makes the API client from --config; commands call it after
// checking their arguments, so usage errors come first.
func (o *adminOpts) client(s streams) (*cpclient.Client, error) {
	cfg, err := cpclient.LoadConfig(o.config)
	if err != nil {
		return nil, err
	}
	if err := cpclient.CheckConfigMode(o.config); err != nil {
		fmt.Fprintf(s.Err, "warning: %v\n", err)
	}
	if o.server != "" {
		u, err := url.Parse(o.server)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, usagef("--server %q: use https://HOST[:PORT]", o.server)
		}
		cfg.Server = o.server
	}
	return cpclient.New(cfg)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// oneName checks that a command got exactly one NAME argument.
func oneName(cmd string, args []string) (string, error) {
	if len(args) != 1 {
		return "", usagef("%s takes exactly one NAME (got %d arguments)", cmd, len(args))
	}
	return args[0], nil
}
