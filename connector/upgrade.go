package connector

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/upgrade"
)

// downloadTimeout bounds one bundle download.
const downloadTimeout = 30 * time.Minute

// upgradeState is the agent's side of an upgrade: what it reports to the
// control plane, and whether it is installing or has blessed this boot.
type upgradeState struct {
	report     *cpapi.UpgradeReport
	installing bool
	installed  string // the version installed, waiting for the reboot
	blessed    bool   // done for this boot
	blessTries int    // failed attempts; given up after maxBlessTries
}

// maxBlessTries bounds the attempts to bless a boot (one per heartbeat):
// an ESP that cannot be read is not retried every few seconds forever.
const maxBlessTries = 3

func (a *Agent) upgradeReport() *cpapi.UpgradeReport {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.up.report == nil {
		return nil
	}
	r := *a.up.report
	return &r
}

// setReport sets what the next heartbeats report; the reason is made
// acceptable to the control plane (cpapi.CleanUpgradeReason).
func (a *Agent) setReport(r *cpapi.UpgradeReport) {
	if r != nil {
		r.Reason = cpapi.CleanUpgradeReason(r.Reason)
	}
	a.mu.Lock()
	a.up.report = r
	a.mu.Unlock()
}

// acknowledged is called after a heartbeat carrying sent was accepted: the
// control plane has recorded a failure, so it is not repeated (a repeat
// after a new order would read as that order failing too).
func (a *Agent) acknowledged(sent *cpapi.UpgradeReport) {
	if sent == nil || sent.State != cpapi.UpgradeFailed {
		return
	}
	a.mu.Lock()
	same := a.up.report != nil && *a.up.report == *sent
	if same {
		a.up.report = nil
	}
	a.mu.Unlock()
	if same && a.Upgrades != nil {
		a.Upgrades.ClearFailure()
	}
}

// assessBoot runs once the identity is loaded: it finds out whether an
// upgrade was tried and rolled back (the machine is back on this root), to
// report the failed version and why.
func (a *Agent) assessBoot() {
	if a.Upgrades == nil {
		return
	}
	f, err := a.Upgrades.Assess(a.now())
	if err != nil {
		a.log().Warn("cannot check the previous boot for a failed upgrade", "error", err)
	}
	if f == nil {
		return
	}
	a.setReport(&cpapi.UpgradeReport{Version: f.Version, State: cpapi.UpgradeFailed, Reason: f.Reason})
	a.log().Warn("an upgrade failed and was rolled back", "version", f.Version, "reason", f.Reason)
	a.say(fmt.Sprintf("outpost: the upgrade to %s failed and was rolled back: %s", f.Version, f.Reason))
}

// afterBeat blesses a trial boot once a heartbeat succeeded with the
// enrolled identity, and starts an upgrade the control plane ordered.
func (a *Agent) afterBeat(ctx context.Context, en enrollment, resp cpapi.HeartbeatResponse) {
	if a.Upgrades == nil {
		if o := resp.Upgrade; o != nil && a.upgradeReport() == nil {
			a.setReport(&cpapi.UpgradeReport{Version: o.Version, State: cpapi.UpgradeFailed,
				Reason: "this connector cannot upgrade itself (started without an upgrade setup); deploy the new release's image"})
		}
		return
	}
	a.mu.Lock()
	bless := !a.up.blessed && a.up.blessTries < maxBlessTries
	a.mu.Unlock()
	if bless && resp.Name == en.name {
		trial, err := a.Upgrades.Bless()
		if err != nil {
			a.mu.Lock()
			a.up.blessTries++
			a.mu.Unlock()
			a.log().Warn("cannot bless this boot; if it is a trial of an upgrade, the boot deadline will roll it back", "error", err)
		} else {
			a.mu.Lock()
			a.up.blessed = true
			a.mu.Unlock()
			if trial {
				a.Upgrades.ClearFailure()
				a.log().Info("upgrade confirmed: this boot is blessed", "version", a.Version)
				a.say(fmt.Sprintf("outpost: %s is healthy; this boot is confirmed", a.Version))
			}
		}
	}
	o := resp.Upgrade
	if o == nil || o.Version == a.Version {
		return
	}
	a.mu.Lock()
	busy := a.up.installing || a.up.installed == o.Version
	if !busy {
		a.up.installing = true
	}
	a.mu.Unlock()
	if busy {
		return // the order is repeated in every answer until it is done
	}
	go a.install(ctx, en, *o)
}

// install downloads, checks and installs the ordered release, then
// reboots into it; a failure is reported on the next heartbeats.
func (a *Agent) install(ctx context.Context, en enrollment, o cpapi.UpgradeOrder) {
	installed := false
	defer func() {
		a.mu.Lock()
		a.up.installing = false
		if installed {
			a.up.installed = o.Version
		}
		a.mu.Unlock()
	}()
	a.setReport(&cpapi.UpgradeReport{Version: o.Version, State: cpapi.UpgradeInstalling})
	a.log().Info("upgrade ordered: downloading the bundle", "version", o.Version, "size", o.Size)
	a.say(fmt.Sprintf("outpost: upgrading to %s: downloading and checking the bundle", o.Version))
	path := a.Upgrades.DownloadPath()
	defer os.Remove(path)
	err := a.download(ctx, en, o, path)
	var inst upgrade.Installed
	if err == nil {
		inst, err = a.Upgrades.Install(ctx, path, o.AllowDowngrade)
	}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		reason := err.Error()
		a.setReport(&cpapi.UpgradeReport{Version: o.Version, State: cpapi.UpgradeFailed, Reason: reason})
		a.Upgrades.RecordFailure(upgrade.Failure{Version: o.Version, Reason: reason, At: a.now().UTC()})
		a.log().Warn("upgrade failed; staying on the running version", "version", o.Version, "error", reason)
		a.say(fmt.Sprintf("outpost: the upgrade to %s failed: %s", o.Version, reason))
		return
	}
	a.Upgrades.ClearFailure()
	installed = true
	a.log().Info("upgrade installed; rebooting to try it once", "version", o.Version, "slot", inst.Slot, "entry", inst.Entry)
	a.say(fmt.Sprintf("outpost: %s installed on root %s; rebooting to try it (it falls back by itself if it does not prove healthy)", o.Version, inst.Slot))
	if a.Reboot == nil {
		a.log().Warn("no reboot configured; reboot to try the new version")
		return
	}
	if err := a.Reboot(); err != nil {
		a.log().Error("reboot failed", "error", err)
	}
}

// download fetches the bundle over mutual TLS into path (0600).
func (a *Agent) download(ctx context.Context, en enrollment, o cpapi.UpgradeOrder, path string) error {
	ctx, cancel := context.WithTimeout(ctx, downloadTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+en.controlPlane+o.Bundle, nil)
	if err != nil {
		return err
	}
	// The heartbeat client's transport (mutual TLS), without its
	// per-request timeout: a bundle takes longer than a heartbeat.
	resp, err := (&http.Client{Transport: a.client.Transport}).Do(req)
	if err != nil {
		return fmt.Errorf("download the bundle: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if e, ok := cpapi.ParseError(b); ok {
			return fmt.Errorf("download the bundle: %w", e)
		}
		return fmt.Errorf("download the bundle: the control plane answered %s", resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	body := io.Reader(resp.Body)
	if o.Size > 0 {
		body = io.LimitReader(resp.Body, o.Size+1)
	}
	n, err := io.Copy(f, body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("download the bundle to %s: %w", path, err)
	}
	if o.Size > 0 && n != o.Size {
		return fmt.Errorf("download the bundle: got %d bytes, the control plane announced %d", n, o.Size)
	}
	return nil
}

// say prints a line for a person on the console.
func (a *Agent) say(line string) {
	if a.Console != nil {
		fmt.Fprintln(a.Console, line)
	}
}
