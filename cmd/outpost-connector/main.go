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
	"runtime"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/connector"
	"github.com/outpost-appliance/outpost/firstboot/sysroot"
	"github.com/outpost-appliance/outpost/upgrade"
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
  outpost-connector install BUNDLE [--allow-downgrade] [--no-reboot]
  outpost-connector --version

run (the default, what the systemd unit starts) waits until first boot has
enrolled the appliance, then heartbeats to the control plane over mutual
TLS, renews the certificate before it expires, and reports the connection's
state on the console, in the journal and in /run/outpost/connector.json.

install checks a release bundle (signature, appliance, architecture,
version, size, hashes) before writing anything, writes it to the inactive
root partition with a boot entry that is tried once, and reboots into it. The
agent confirms the new system once it heartbeats; otherwise the next boot
returns to the current one. The control plane normally orders upgrades; this
is for a bundle at hand.

status prints that state. Its exit code is for automation: 0 connected,
3 not enrolled yet, 4 disconnected or connecting, 5 blocked or revoked.

Examples:
  outpost-connector status
  outpost-connector status --json | jq .skew
  outpost-connector install /var/lib/outpost/outpost-connector-0.2.0.bundle

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
	if len(args) > 0 && (args[0] == "run" || args[0] == "status" || args[0] == "install") {
		cmd, args = args[0], args[1:]
	}
	fl := pflag.NewFlagSet("outpost-connector", pflag.ContinueOnError)
	fl.SetOutput(io.Discard)
	root := fl.String("root", "/", "treat DIR as the appliance's root: every file read or written is under it")
	jsonOut := fl.Bool("json", false, "status: print the status as JSON")
	interval := fl.Duration("interval", 0, "run: time between heartbeats (default: what the control plane asks, else 10s)")
	verbose := fl.BoolP("verbose", "v", false, "run: log debug detail")
	allowDowngrade := fl.Bool("allow-downgrade", false, "install: accept a version older than the running one")
	noReboot := fl.Bool("no-reboot", false, "install: do not reboot; the new version is tried at the next boot")
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
	case cmd == "install" && fl.NArg() != 1:
		return exitUsage, usageError{errors.New("install: give one bundle file")}
	case cmd != "install" && fl.NArg() > 0:
		return exitUsage, usageError{fmt.Errorf("unexpected argument %q", fl.Arg(0))}
	}
	r, err := sysroot.New(*root)
	if err != nil {
		return exitFailure, err
	}
	if cmd == "status" {
		return status(r, *jsonOut, stdout)
	}
	up, err := upgradeSystem(r)
	if cmd == "install" {
		if err != nil {
			return exitFailure, err
		}
		return install(ctx, up, fl.Arg(0), *allowDowngrade, *noReboot, stdout)
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
	if err != nil {
		a.Log.Warn("upgrades are off: this system is not an outpost appliance with A/B roots", "error", err)
	} else {
		a.Upgrades = &up
		if r.IsHost() {
			a.Reboot = reboot
		}
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

// upgradeSystem describes the appliance under r for upgrades: its name
// from the marker, its version, architecture and paths.
func upgradeSystem(r sysroot.Root) (upgrade.System, error) {
	b, err := r.ReadFile(appliance.MarkerFile)
	if err != nil {
		return upgrade.System{}, fmt.Errorf("not an outpost appliance: %w", err)
	}
	name, _, err := appliance.ParseMarker(b)
	if err != nil {
		return upgrade.System{}, err
	}
	return upgrade.LiveSystem(r.Dir(), name, runtime.GOARCH, version), nil
}

func reboot() error { return exec.Command("systemctl", "reboot").Run() }

func install(ctx context.Context, up upgrade.System, bundle string, allowDowngrade, noReboot bool, stdout io.Writer) (int, error) {
	inst, err := up.Install(ctx, bundle, allowDowngrade)
	if err != nil {
		return exitFailure, err
	}
	m := inst.Manifest
	fmt.Fprintf(stdout, "%s %s installed on root %s (boot entry %s, one try)\n", m.Name, m.Version, inst.Slot, inst.Entry)
	if noReboot {
		fmt.Fprintln(stdout, "reboot to try it; if it does not prove healthy, the next boot returns to this version")
		return exitOK, nil
	}
	fmt.Fprintln(stdout, "rebooting to try it; if it does not prove healthy, the next boot returns to this version")
	return exitOK, reboot()
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
