package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/internal/cptest"
	"github.com/outpost-appliance/outpost/release"
)

// writeBundle makes a release key (as 'releases keygen' writes it) and a
// bundle it signs in dir; it returns the bundle's path and the public key.
func writeBundle(t *testing.T, dir, version string) (string, ed25519.PublicKey) {
	t.Helper()
	priv, pub, err := release.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	key, err := release.ParsePrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := release.ParsePublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "release.key.pub"), pub, 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "outpost-connector-"+version+".bundle")
	var b bytes.Buffer
	if _, err := release.Write(&b, release.Info{Name: "outpost-connector", Version: version, Architecture: "amd64"}, release.Contents{Image: bytes.NewReader(bytes.Repeat([]byte("root "), 4096)), Size: 20480, Kernel: []byte("kernel")}, key, dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return file, pk
}

// cliCode runs the CLI in-process and returns the exit code with the output.
func cliCode(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	out, errOut, err := cli(t, dir, args...)
	var e bytes.Buffer
	code := exitCode(err, &e)
	return code, out, errOut + e.String()
}

// TestReleasesAndUpgradeCLI: publish and list releases, pin a group's
// version, show its rollout, start it now; and the refusals, each with
// what to do.
func TestReleasesAndUpgradeCLI(t *testing.T) {
	work := t.TempDir()
	bundle, pub := writeBundle(t, work, "2.0")
	srv := cptest.Start(t, cptest.Options{ReleaseKeys: []ed25519.PublicKey{pub}})
	dir := srv.Dir

	out := mustCLI(t, dir, "releases", "publish", bundle)
	if !strings.Contains(out, "Version:       2.0") || !strings.Contains(out, "Name:          outpost-connector") {
		t.Errorf("publish:\n%s", out)
	}
	if out := mustCLI(t, dir, "releases", "list"); !strings.Contains(out, "VERSION") || !strings.Contains(out, "2.0  ") {
		t.Errorf("list:\n%s", out)
	}
	var rs []cpapi.Release
	if err := json.Unmarshal([]byte(mustCLI(t, dir, "releases", "list", "--json")), &rs); err != nil || len(rs) != 1 || rs[0].Version != "2.0" {
		t.Errorf("list --json: %+v %v", rs, err)
	}

	// A bundle signed by a key the server does not trust.
	otherDir := t.TempDir()
	other, _ := writeBundle(t, otherDir, "2.1")
	if code, _, msg := cliCode(t, dir, "releases", "publish", other); code != 1 || !strings.Contains(msg, "--release-key FILE.pub") {
		t.Errorf("untrusted bundle: exit %d, %q", code, msg)
	}
	if code, _, msg := cliCode(t, dir, "releases", "publish", filepath.Join(work, "missing.bundle")); code != 1 || !strings.Contains(msg, "missing.bundle") {
		t.Errorf("missing file: exit %d, %q", code, msg)
	}

	if code, _, msg := cliCode(t, dir, "groups", "create", "melb", "--version", "9.9"); code != 1 || !strings.Contains(msg, `version "9.9" is not published`) || !strings.Contains(msg, "published: 2.0") {
		t.Errorf("create with an unpublished version: exit %d, %q", code, msg)
	}
	mustCLI(t, dir, "groups", "create", "melb")
	out = mustCLI(t, dir, "groups", "edit", "melb", "--version", "2.0")
	if !strings.Contains(out, "Upgrade window:  sun 02:00–06:00 UTC") || !strings.Contains(out, "Target version:  2.0 (pinned)") {
		t.Errorf("edit --version:\n%s", out)
	}
	out = mustCLI(t, dir, "groups", "show", "melb")
	if !strings.Contains(out, "Rollout:         idle") || !strings.Contains(out, "(no connectors)") {
		t.Errorf("show:\n%s", out)
	}
	var g cpapi.Group
	if err := json.Unmarshal([]byte(mustCLI(t, dir, "groups", "show", "melb", "--json")), &g); err != nil || g.Rollout == nil || g.Rollout.Target != "2.0" || g.TargetVersion != "2.0" {
		t.Errorf("show --json: %+v %v", g, err)
	}
	out = mustCLI(t, dir, "groups", "edit", "melb", "--version", "latest")
	if !strings.Contains(out, "Target version:  latest (2.0)") {
		t.Errorf("edit --version latest:\n%s", out)
	}

	if code, _, msg := cliCode(t, dir, "upgrade", "--group", "melb"); code != 2 || !strings.Contains(msg, "missing --now") {
		t.Errorf("upgrade without --now: exit %d, %q", code, msg)
	}
	if code, _, msg := cliCode(t, dir, "upgrade", "--now"); code != 2 || !strings.Contains(msg, "--group") {
		t.Errorf("upgrade without --group: exit %d, %q", code, msg)
	}
	if code, _, msg := cliCode(t, dir, "upgrade", "--group", "nope", "--now"); code != 1 || !strings.Contains(msg, `no group named "nope"`) {
		t.Errorf("upgrade of an unknown group: exit %d, %q", code, msg)
	}
	out = mustCLI(t, dir, "upgrade", "--group", "melb", "--now")
	if !strings.Contains(out, "Rollout:         idle") {
		t.Errorf("upgrade --now:\n%s", out)
	}
}

// TestPublishWithoutReleaseKeyCLI: a server started without --release-key
// refuses a publish, naming the flag, and the CLI exits 1.
func TestPublishWithoutReleaseKeyCLI(t *testing.T) {
	bundle, _ := writeBundle(t, t.TempDir(), "2.0")
	srv := cptest.Start(t, cptest.Options{})
	code, out, msg := cliCode(t, srv.Dir, "releases", "publish", bundle)
	if code != 1 || out != "" || !strings.Contains(msg, "outpost server --release-key FILE.pub") || !strings.Contains(msg, "no_release_key") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, msg)
	}
	if ents, _ := os.ReadDir(filepath.Join(srv.Dir, "releases")); len(ents) != 0 {
		t.Errorf("DATA/releases: %v", ents)
	}
}

// TestServerRefusesABadReleaseKey: a --release-key that is not a public
// key stops the server before it listens, saying which file to give.
func TestServerRefusesABadReleaseKey(t *testing.T) {
	dir := t.TempDir()
	priv, _, err := release.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "release.key")
	os.WriteFile(key, priv, 0o600)
	r := runOutpost(t, "", "server", "--data", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0", "--release-key", key)
	if r.code != 2 || !strings.Contains(r.stderr, "--release-key: "+key) || !strings.Contains(r.stderr, "FILE.pub") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
		t.Error("the data directory was created")
	}
}

// TestRolloutOutputGolden: groups show prints the rollout with one line
// per connector, escaping what connectors sent.
func TestRolloutOutputGolden(t *testing.T) {
	t1 := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	g := cpapi.Group{Name: "melb", Location: "Melbourne DC", WindowDay: 0, WindowHour: 2, CreatedAt: t1, Keys: 1, Connectors: 4,
		Rollout: &cpapi.Rollout{Target: "2.0", State: cpapi.RolloutUpgrading, Reason: "Melbourne-1 is upgrading to 2.0", NextWindow: time.Date(2026, 11, 29, 2, 0, 0, 0, time.UTC),
			Connectors: []cpapi.RolloutConnector{
				{Name: "Melbourne-1", Version: "1.0", Health: "healthy", Status: cpapi.RolloutActive, Detail: "installing 2.0", Since: t1},
				{Name: "Melbourne-2", Version: "1.0\x1b[31m", Health: "healthy", Status: cpapi.RolloutPending, Detail: "waiting: Melbourne-1 is upgrading"},
				{Name: "Melbourne-3", Version: "2.0", Health: "healthy", Status: cpapi.RolloutDone},
				{Name: "Melbourne-4", Version: "3.0", Health: "unreachable", Status: cpapi.RolloutNewer, Detail: "newer than the target 2.0; left alone"},
			}}}
	var b bytes.Buffer
	printGroupDetail(&b, g)
	stopped := g
	ro := *g.Rollout
	ro.State, ro.Reason, ro.Now, ro.WindowOpen = cpapi.RolloutStopped, "Melbourne-1 failed to upgrade to 2.0: rolled back", true, true
	ro.Connectors = []cpapi.RolloutConnector{{Name: "Melbourne-1", Version: "1.0", Health: "healthy", Status: cpapi.RolloutFailed, Detail: ro.Reason},
		{Name: "Melbourne-2", Version: "1.0", Health: "healthy", Status: cpapi.RolloutPending, Detail: "waiting: the rollout stopped (Melbourne-1 failed); run 'outpost upgrade --group melb --now' or change the group's version"}}
	stopped.Rollout, stopped.TargetVersion = &ro, "2.0"
	b.WriteString("--- stopped\n")
	printGroupDetail(&b, stopped)
	golden(t, "groups-show-rollout.txt", b.String())
}

func TestUpgradeHelpGolden(t *testing.T) {
	for _, tc := range []struct {
		file string
		args []string
	}{
		{"upgrade-help.txt", []string{"upgrade", "--help"}},
		{"releases-publish-help.txt", []string{"releases", "publish", "--help"}},
	} {
		r := runOutpost(t, "", tc.args...)
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("%q: exit %d, stderr %q", tc.args, r.code, r.stderr)
		}
		golden(t, tc.file, r.stdout)
	}
}
