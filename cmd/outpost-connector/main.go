// Command outpost-connector is the appliance's agent after enrollment: it
// heartbeats to the control plane over mutual TLS, renews its certificate
// and shows the connection's state; `outpost-connector status` prints it.
// Everything it does lives in package connector; this file parses flags.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/outpost-appliance/outpost/connector"
	"github.com/outpost-appliance/outpost/firstboot/sysroot"
)

// version is set at link time.
var version = "dev"

// Exit codes. status exits 0 when connected, 4 when disconnected or still
// connecting, 5 when blocked or revoked, 3 when not enrolled yet.
const (
	exitOK           = 0
	exitFailure      = 1
	exitUsage        = 2
	exitNotEnrolled  = 3
	exitDisconnected = 4
	exitBlocked      = 5
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

type usageError struct{ error }

const usage = `Usage:
  outpost-connector [run] [--root DIR] [--interval D]
  outpost-connector status [--root DIR] [--json]
  outpost-connector --version

run (the default, what the systemd unit starts) waits until first boot has
enrolled the appliance, then heartbeats to the control plane over mutual
TLS, renews the certificate before it expires, and reports the connection's
state on the console, in the journal and in /run/outpost/connector.json.

status prints that state. Its exit code is for automation: 0 connected,
3 not enrolled yet, 4 disconnected or connecting, 5 blocked or revoked.

Examples:
  outpost-connector status
  outpost-connector status --json | jq .skew

Flags:
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	code, err := dispatch(ctx, args, stdout, stderr)
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "outpost-connector: %v\nRun 'outpost-connector --help' for usage.\n", err)
			return exitUsage
		}
		fmt.Fprintf(stderr, "outpost-connector: %v\n", err)
		if code == exitOK {
			code = exitFailure
		}
	}
	return code
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	cmd := "run"
	if len(args) > 0 && (args[0] == "run" || args[0] == "status") {
		cmd, args = args[0], args[1:]
	}
	fl := pflag.NewFlagSet("outpost-connector", pflag.ContinueOnError)
	fl.SetOutput(io.Discard)
	root := fl.String("root", "/", "treat DIR as the appliance's root: every file read or written is under it")
	jsonOut := fl.Bool("json", false, "status: print the status as JSON")
	interval := fl.Duration("interval", 0, "run: time between heartbeats (default: what the control plane asks, else 10s)")
	verbose := fl.BoolP("verbose", "v", false, "run: log debug detail")
	showVersion := fl.Bool("version", false, "print the version")
	help := fl.BoolP("help", "h", false, "show this help")
	if err := fl.Parse(args); err != nil {
		return exitUsage, usageError{err}
	}
	switch {
	case *help:
		fmt.Fprint(stdout, usage+fl.FlagUsages())
		return exitOK, nil
	case *showVersion:
		fmt.Fprintf(stdout, "outpost-connector %s\n", version)
		return exitOK, nil
	case fl.NArg() > 0:
		return exitUsage, usageError{fmt.Errorf("unexpected argument %q", fl.Arg(0))}
	}
	r, err := sysroot.New(*root)
	if err != nil {
		return exitFailure, err
	}
	if cmd == "status" {
		return status(r, *jsonOut, stdout)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	a := &connector.Agent{
		Root: r, Version: version, Interval: *interval,
		Log:     slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
		Facts:   connector.HostFacts{Root: r},
		Console: stdout,
	}
	if r.IsHost() {
		// The serial and VGA login prompts show the banner again.
		if agetty, err := exec.LookPath("agetty"); err == nil {
			a.BannerChanged = func() { exec.Command(agetty, "--reload").Run() }
		}
	}
	a.Log.Info("outpost-connector starting", "version", version, "root", r.Dir())
	if err := a.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return exitFailure, err
	}
	return exitOK, nil
}

func status(r sysroot.Root, asJSON bool, stdout io.Writer) (int, error) {
	st, err := connector.ReadStatus(r)
	if errors.Is(err, fs.ErrNotExist) {
		st = connector.Status{State: connector.StateWaiting, Reason: "the agent has not reported yet (is outpost-connector.service running?)"}
	} else if err != nil {
		return exitFailure, err
	}
	code := exitDisconnected
	switch st.State {
	case connector.StateConnected:
		code = exitOK
	case connector.StateWaiting:
		code = exitNotEnrolled
	case connector.StateBlocked, connector.StateRevoked:
		code = exitBlocked
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return code, enc.Encode(st)
	}
	return code, st.WriteText(stdout, time.Now())
}
