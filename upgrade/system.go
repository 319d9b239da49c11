package upgrade

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/internal/atomicfile"
)

// System is a running appliance as the upgrade sees it: where its kernel
// command line, devices, ESP, release keys and upgrade state are, and what
// it runs.
type System struct {
	Cmdline  string // /proc/cmdline
	DevDir   string // /dev/disk/by-partuuid
	SysDir   string // /sys/class/block
	ESPDir   string // appliance.ESPMount
	KeysDir  string // appliance.ReleaseKeysDir
	StateDir string // appliance.UpgradeDir
	Blessed  string // appliance.BlessedFile

	// Root is the running root, whose machine files (CarryOver) an
	// upgrade copies into the new root, which it mounts; "" skips that
	// and writes the slot through the disk (tests).
	Root string

	// The running appliance.
	Name, Architecture, Version string
}

// LiveSystem is the appliance under root ("/" on the appliance).
func LiveSystem(root, name, arch, version string) System {
	at := func(p string) string { return filepath.Join(root, p) }
	return System{
		Cmdline: "/proc/cmdline", DevDir: "/dev/disk/by-partuuid", SysDir: "/sys/class/block",
		ESPDir: at(appliance.ESPMount), KeysDir: at(appliance.ReleaseKeysDir), StateDir: at(appliance.UpgradeDir),
		Blessed: at(appliance.BlessedFile), Root: root,
		Name: name, Architecture: arch, Version: version,
	}
}

func (s System) locate() (Disk, Slot, error) {
	path, root, err := Live(s.Cmdline, s.DevDir, s.SysDir)
	if err != nil {
		return Disk{}, Slot{}, err
	}
	d, err := OpenDisk(path)
	if err != nil {
		return Disk{}, Slot{}, err
	}
	cur, _, err := d.Slots(root)
	return d, cur, err
}

// Install installs the bundle at path into the inactive root (Installer).
func (s System) Install(ctx context.Context, path string, allowDowngrade bool) (Installed, error) {
	keys, err := LoadTrusted(s.KeysDir)
	if err != nil {
		return Installed{}, err
	}
	if len(keys) == 0 {
		return Installed{}, errNoKeys
	}
	d, cur, err := s.locate()
	if err != nil {
		return Installed{}, err
	}
	in := Installer{Disk: d.Path, Running: cur.GUID, ESP: ESP{s.ESPDir}, Trusted: keys,
		Name: s.Name, Architecture: s.Architecture, Version: s.Version, AllowDowngrade: allowDowngrade}
	if s.Root != "" {
		dev := func(sl Slot) string { return filepath.Join(s.DevDir, strings.ToLower(sl.GUID)) }
		in.Device = func(sl Slot) (string, int64) { return dev(sl), 0 }
		in.Carry = func(sl Slot) error { return carryInto(dev(sl), s.Root, filepath.Join(s.Root, "run/outpost/new-root")) }
	}
	return in.Install(ctx, path)
}

// Bless confirms the running boot (ESP.Bless) and records it in
// s.Blessed for the boot deadline. It reports whether this was a trial
// boot.
func (s System) Bless() (bool, error) {
	_, cur, err := s.locate()
	if err != nil {
		return false, err
	}
	trial, err := ESP{s.ESPDir}.Bless(cur)
	if err != nil {
		return false, err
	}
	if s.Blessed != "" {
		if err := os.MkdirAll(filepath.Dir(s.Blessed), 0o755); err != nil {
			return trial, err
		}
		if err := os.WriteFile(s.Blessed, []byte(s.Version+"\n"), 0o644); err != nil {
			return trial, err
		}
	}
	if trial {
		os.Remove(s.trialNote())
	}
	return trial, nil
}

// Failure is an upgrade that did not take: the version, and why.
type Failure struct {
	Version string    `json:"version"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
}

const failureFile = "failed.json"

// Assess looks for a trial boot that failed (the machine fell back to this
// root) and returns the failure, kept in StateDir until ClearFailure, so
// it is reported even if the agent restarts.
func (s System) Assess(now time.Time) (*Failure, error) {
	_, cur, err := s.locate()
	if err != nil {
		return s.lastFailure(), err
	}
	t, err := ESP{s.ESPDir}.FailedTrial(cur)
	if err != nil || t == nil {
		return s.lastFailure(), err
	}
	note := s.trialNote()
	reason := fmt.Sprintf("%s was booted once and never confirmed healthy (no report from it: it did not boot far enough, or was reset); back on %s", t.Version, s.Version)
	if b, err := os.ReadFile(note); err == nil && strings.TrimSpace(string(b)) != "" {
		reason = strings.TrimSpace(string(b)) + "; back on " + s.Version
	}
	f := &Failure{Version: t.Version, Reason: reason, At: now.UTC()}
	if err := s.RecordFailure(*f); err != nil {
		return f, err
	}
	os.Remove(note)
	return f, nil
}

// RecordFailure keeps f in StateDir until ClearFailure.
func (s System) RecordFailure(f Failure) error {
	b, _ := json.Marshal(f)
	if err := os.MkdirAll(s.StateDir, 0o700); err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(s.StateDir, failureFile), b, 0o600)
}

func (s System) lastFailure() *Failure {
	b, err := os.ReadFile(filepath.Join(s.StateDir, failureFile))
	if err != nil {
		return nil
	}
	var f Failure
	if json.Unmarshal(b, &f) != nil || f.Version == "" {
		return nil
	}
	return &f
}

// ClearFailure forgets a recorded failure.
func (s System) ClearFailure() error {
	err := os.Remove(filepath.Join(s.StateDir, failureFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// trialNote is appliance.TrialFailureFile in StateDir: the boot deadline's
// reason for giving up a trial boot.
func (s System) trialNote() string {
	return filepath.Join(s.StateDir, filepath.Base(appliance.TrialFailureFile))
}

// DownloadPath is where a bundle being downloaded is kept (on the data
// partition).
func (s System) DownloadPath() string { return filepath.Join(s.StateDir, "bundle.partial") }
