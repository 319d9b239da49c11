// Command outpost-firstboot configures the connector appliance at first boot
// (network, DNS, time), checks its requirements and enrolls it with the
// control plane; `outpost-firstboot status` shows where it stands. Everything
// it does lives in package firstboot; this file parses flags.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/outpost-appliance/outpost/firstboot"
	"github.com/outpost-appliance/outpost/firstboot/sysroot"
	"github.com/outpost-appliance/outpost/firstboot/timesync"
	"github.com/outpost-appliance/outpost/firstboot/vmtools"
)

// version is set at link time.
var version = "dev"

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	// exitNoKey: configured as far as possible, waiting for a key; the
	// systemd path unit starts the service again when the key file appears.
	exitNoKey = 3
	// exitNotYet (status): first boot has not run, is running or waits for
	// a key; enrolled is exitOK, failed exitFailure.
	exitNotYet = 3
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

type usageError struct{ error }

// statusCode is the exit status of `status` for a state, so automation can
// wait on it (see the usage text).
func statusCode(state string) int {
	switch state {
	case firstboot.StateEnrolled:
		return exitOK
	case firstboot.StateFailed:
		return exitFailure
	default:
		return exitNotYet
	}
}

const usage = `Usage:
  outpost-firstboot [--root DIR] [--interface NAME] [--config FILE] [flags]
  outpost-firstboot status [--root DIR] [--json]
  outpost-firstboot --version

Configures the appliance's network, DNS and clock from the values given at
import time, checks its requirements and enrolls it with the control plane.
Safe to run again: progress is kept in DIR/var/lib/outpost/firstboot.json and
an appliance enrolls once.

Without --root it runs only on an outpost appliance, a machine whose
/etc/outpost/appliance was written by outpost image build; elsewhere it
changes nothing and exits 1. Under --root DIR no marker is needed: the tree
is the one you chose. The primary NIC is never a virtual interface (bridge,
veth, tun/tap, ifb, bond, VLAN…) unless named with --interface.

Exit status: 0 enrolled, 1 failed, 2 usage error, 3 waiting for the
provisioning key (the systemd path unit starts it again when the key file
appears). "status" exits 0 when the appliance is enrolled, 1 when first boot
failed (or the status cannot be read), 3 when first boot has not run, is
still running or waits for the key.

Examples:
  outpost-firstboot                      # what the systemd unit runs
  outpost-firstboot --root /mnt/sysroot --interface eth0 --config test.conf
  outpost-firstboot status --json
  until outpost-firstboot status >/dev/null; do [ $? = 1 ] && exit 1; sleep 5; done

Flags:
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	code, err := dispatch(ctx, args, stdout, stderr)
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "outpost-firstboot: %v\nRun 'outpost-firstboot --help' for usage.\n", err)
			return exitUsage
		}
		fmt.Fprintf(stderr, "outpost-firstboot: %v\n", err)
		if code == exitOK {
			code = exitFailure
		}
	}
	return code
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	status := len(args) > 0 && args[0] == "status"
	if status {
		args = args[1:]
	}
	fs := pflag.NewFlagSet("outpost-firstboot", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	root := fs.String("root", "/", "treat DIR as the appliance's root: every file read or written is under it")
	var (
		jsonOut              *bool
		iface, cfgFile       *string
		dhcpTimeout, keyWait *time.Duration
		verbose              *bool
		attempts             *int
	)
	if status {
		jsonOut = fs.Bool("json", false, "print the status as JSON")
	} else {
		iface = fs.String("interface", "", "the primary NIC (default: the first Ethernet NIC, never a virtual interface)")
		cfgFile = fs.String("config", "", "a property file or OVF environment with the highest precedence (a host path)")
		dhcpTimeout = fs.Duration("dhcp-timeout", 30*time.Second, "how long to wait for a DHCP lease")
		keyWait = fs.Duration("wait-key", 0, "how long to wait for a provisioning key to be written (0: exit with status 3)")
		verbose = fs.BoolP("verbose", "v", false, "log debug detail")
		attempts = fs.Int("enroll-attempts", 0, "enrollment requests before giving up (0: until interrupted); retries back off up to a minute")
	}
	help := fs.BoolP("help", "h", false, "show this help")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return exitUsage, usageError{err}
	}
	if *help {
		fmt.Fprint(stdout, usage+fs.FlagUsages())
		return exitOK, nil
	}
	if *showVersion {
		fmt.Fprintf(stdout, "outpost-firstboot %s\n", version)
		return exitOK, nil
	}
	if fs.NArg() > 0 {
		return exitUsage, usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	r, err := sysroot.New(*root)
	if err != nil {
		return exitFailure, err
	}
	if status {
		st, err := firstboot.ReadStatus(r)
		if err != nil {
			return exitFailure, err
		}
		code := statusCode(st.State)
		if *jsonOut {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return code, enc.Encode(st)
		}
		return code, st.WriteText(stdout)
	}

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	env := &firstboot.Env{
		Root: r, Interface: *iface, ConfigFile: *cfgFile, DHCPTimeout: *dhcpTimeout, KeyWait: *keyWait, EnrollAttempts: *attempts,
		Log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
	}
	if point := os.Getenv("OUTPOST_FIRSTBOOT_CRASH_AT"); point != "" {
		// Test hook: the process kills itself at the named point, as a
		// power cut would, so tests can resume from every step.
		env.Crash = func(p string) {
			if p == point {
				unix.Kill(os.Getpid(), unix.SIGKILL)
			}
		}
	}
	if r.IsHost() {
		// The real machine: step the clock, set the host name, and tell
		// vSphere how it went. Under another root these stay untouched.
		env.SetClock = timesync.SetSystemClock
		env.SetHostname = func(h string) error { return unix.Sethostname([]byte(h)) }
		env.RPCTool = vmtools.Lookup()
		env.Systemctl = func(ctx context.Context, args ...string) error {
			if out, err := exec.CommandContext(ctx, "systemctl", args...).CombinedOutput(); err != nil {
				return fmt.Errorf("systemctl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
			}
			return nil
		}
	}
	env.Log.Info("outpost-firstboot starting", "version", version, "root", r.Dir())
	st, err := (&firstboot.Runner{Env: env}).Run(ctx)
	if err != nil {
		if errors.Is(err, firstboot.ErrNoKey) {
			fmt.Fprintf(stderr, "outpost-firstboot: %v\n", firstboot.ErrNoKey)
			return exitNoKey, nil
		}
		return exitFailure, err
	}
	s := st.Status()
	fmt.Fprintf(stdout, "enrolled as %s (group %s) with %s\n", s.Name, s.Group, s.ControlPlane)
	return exitOK, nil
}
