package controlplane_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/controlplane"
	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/release"
)

// releaseKey makes a release key pair as 'outpost releases keygen' does.
func releaseKey(t testing.TB) (ed25519.PrivateKey, ed25519.PublicKey) {
	t.Helper()
	priv, pub, err := release.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := release.ParsePrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	p, err := release.ParsePublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k, p
}

// makeBundle writes a signed bundle of a small random root image.
func makeBundle(t testing.TB, key ed25519.PrivateKey, version string) []byte {
	t.Helper()
	img := make([]byte, 64<<10)
	r := rand.New(rand.NewPCG(uint64(len(version)), 7))
	for i := range img {
		img[i] = byte(r.Uint32())
	}
	var b bytes.Buffer
	if _, err := release.Write(&b, release.Info{Name: "outpost-connector", Version: version, Architecture: "amd64"}, release.Contents{Image: bytes.NewReader(img), Size: int64(len(img)), Kernel: []byte("kernel")}, key, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// rolloutEnv is a control plane trusting one release key, with a short
// upgrade timeout, and two connectors of group g (Alice-1 enrolled first)
// heartbeating on 1.0.
type rolloutEnv struct {
	*env
	key        ed25519.PrivateKey
	alice, bob *connector
}

const testUpgradeTimeout = 5 * time.Minute

func newRolloutEnv(t *testing.T, dsn string) *rolloutEnv {
	t.Helper()
	key, pub := releaseKey(t)
	e := newEnvTuned(t, t.TempDir(), dsn, func(c *controlplane.Config) {
		c.ReleaseKeys = []ed25519.PublicKey{pub}
		c.UpgradeTimeout = testUpgradeTimeout
	})
	r := &rolloutEnv{env: e, key: key}
	r.alice = e.enrolled("Alice", fp(1))
	r.bob = e.enrolled("Bob", fp(2))
	r.beatAll("1.0", "1.0")
	return r
}

func (r *rolloutEnv) publish(version string) cpapi.Release {
	r.t.Helper()
	b := makeBundle(r.t, r.key, version)
	rel, err := r.admin.PublishRelease(context.Background(), bytes.NewReader(b), int64(len(b)))
	if err != nil {
		r.t.Fatalf("publish %s: %v", version, err)
	}
	return rel
}

// beat heartbeats k on version (with an optional report) and returns the
// order it got.
func (r *rolloutEnv) beat(k *connector, version string, report *cpapi.UpgradeReport) *cpapi.UpgradeOrder {
	r.t.Helper()
	resp, st, e := k.beat(k.c, cpapi.HeartbeatRequest{Version: version, Uptime: 1, Upgrade: report})
	if st != 200 {
		r.t.Fatalf("heartbeat of %s: %d %+v", k.name, st, e)
	}
	return resp.Upgrade
}

func (r *rolloutEnv) beatAll(alice, bob string) {
	r.t.Helper()
	r.beat(r.alice, alice, nil)
	r.beat(r.bob, bob, nil)
}

func (r *rolloutEnv) step() {
	r.t.Helper()
	if err := r.srv.Service.Rollouts(context.Background()); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rolloutEnv) rollout() *cpapi.Rollout {
	r.t.Helper()
	g, err := r.admin.Group(context.Background(), "g")
	if err != nil {
		r.t.Fatal(err)
	}
	if g.Rollout == nil {
		r.t.Fatal("GET group has no rollout")
	}
	return g.Rollout
}

// ordered lists the connectors holding an upgrade order.
func (r *rolloutEnv) ordered() []string {
	r.t.Helper()
	var out []string
	for _, n := range []string{r.alice.name, r.bob.name} {
		if c := r.connector(n); c.UpgradeTarget != "" {
			out = append(out, n+"→"+c.UpgradeTarget)
		}
	}
	return out
}

func (r *rolloutEnv) openWindow() {
	r.t.Helper()
	now := r.clock.Now()
	day, hour := cpapi.Days[now.Weekday()], now.Hour()
	if _, err := r.admin.EditGroup(context.Background(), cpapi.GroupSpec{Name: "g", WindowDay: &day, WindowHour: &hour}); err != nil {
		r.t.Fatal(err)
	}
}

func detail(ro *cpapi.Rollout, name string) string {
	for _, c := range ro.Connectors {
		if c.Name == name {
			return c.Status + " | " + c.Detail
		}
	}
	return "(absent)"
}

// TestRolloutOneAtATime: outside the window nothing happens; inside it
// one connector is ordered, the next only once the first heartbeats
// healthy on the target, and the rollout ends idle.
func TestRolloutOneAtATime(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		r := newRolloutEnv(t, dsn)
		rel := r.publish("2.0")

		// Sunday 12:00, the window is Sunday 02:00–06:00.
		for range 3 {
			r.step()
			r.clock.Advance(time.Second)
		}
		if o := r.ordered(); o != nil {
			t.Fatalf("ordered outside the window: %v", o)
		}
		ro := r.rollout()
		if ro.State != cpapi.RolloutWaiting || ro.WindowOpen || !ro.NextWindow.Equal(time.Date(2026, 11, 29, 2, 0, 0, 0, time.UTC)) ||
			detail(ro, r.alice.name) != "waiting | waiting: outside the window (next sun 02:00 UTC)" {
			t.Errorf("outside the window: %+v", ro)
		}
		if o := r.beat(r.alice, "1.0", nil); o != nil {
			t.Errorf("heartbeat answered an order outside the window: %+v", o)
		}

		r.openWindow()
		r.step()
		if o := r.ordered(); strings.Join(o, ",") != r.alice.name+"→2.0" {
			t.Fatalf("inside the window: ordered %v, want Alice-1 alone", o)
		}
		want := cpapi.UpgradeOrder{Version: "2.0", Bundle: "/api/v1/releases/2.0/bundle", Size: rel.Size}
		if o := r.beat(r.alice, "1.0", nil); o == nil || *o != want {
			t.Errorf("Alice's order: %+v, want %+v", o, want)
		}
		if o := r.beat(r.bob, "1.0", nil); o != nil {
			t.Errorf("Bob got an order while Alice upgrades: %+v", o)
		}
		r.beat(r.alice, "1.0", &cpapi.UpgradeReport{Version: "2.0", State: cpapi.UpgradeInstalling})
		for range 3 {
			r.clock.Advance(10 * time.Second)
			r.beatAll("1.0", "1.0")
			r.step()
		}
		if o := r.ordered(); len(o) != 1 {
			t.Fatalf("while Alice installs: ordered %v", o)
		}
		ro = r.rollout()
		if ro.State != cpapi.RolloutUpgrading || detail(ro, r.alice.name) != "upgrading | installing 2.0" || detail(ro, r.bob.name) != "waiting | waiting: Alice-1 is upgrading" {
			t.Errorf("while Alice installs: %+v", ro)
		}
		if c := r.connector(r.alice.name); c.UpgradeState != cpapi.UpgradeInstalling || c.UpgradeTarget != "2.0" {
			t.Errorf("Alice's upgrade fields: %+v", c)
		}

		// Alice is back on 2.0: done, and Bob's turn.
		r.clock.Advance(10 * time.Second)
		if o := r.beat(r.alice, "2.0", nil); o != nil {
			t.Errorf("order after reaching the target: %+v", o)
		}
		r.step()
		if o := r.ordered(); strings.Join(o, ",") != r.bob.name+"→2.0" {
			t.Fatalf("after Alice: ordered %v, want Bob-1", o)
		}
		if o := r.beat(r.bob, "1.0", nil); o == nil || o.Version != "2.0" {
			t.Errorf("Bob's order: %+v", o)
		}
		r.clock.Advance(10 * time.Second)
		r.beatAll("2.0", "2.0")
		r.step()
		if o := r.ordered(); o != nil {
			t.Errorf("after both: %v", o)
		}
		if ro := r.rollout(); ro.State != cpapi.RolloutIdle || detail(ro, r.bob.name) != "done | " {
			t.Errorf("after both: %+v", ro)
		}
	})
}

// TestRolloutWaitsForAnUnhealthyMember: nobody is ordered while a member
// of the group is unreachable.
func TestRolloutWaitsForAnUnhealthyMember(t *testing.T) {
	r := newRolloutEnv(t, "")
	r.publish("2.0")
	r.openWindow()
	r.clock.Advance(31 * time.Second) // three intervals without Bob
	r.beat(r.alice, "1.0", nil)
	r.step()
	if o := r.ordered(); o != nil {
		t.Fatalf("ordered while Bob is unreachable: %v", o)
	}
	ro := r.rollout()
	if ro.State != cpapi.RolloutWaiting || detail(ro, r.alice.name) != "waiting | waiting: Bob-1 is unreachable" || detail(ro, r.bob.name) != "waiting | waiting: it is unreachable" {
		t.Errorf("rollout: %+v", ro)
	}
	r.beat(r.bob, "1.0", nil)
	r.step()
	if o := r.ordered(); strings.Join(o, ",") != r.alice.name+"→2.0" {
		t.Errorf("once Bob is back: %v", o)
	}
}

// TestRolloutStopsOnReportedFailure: a connector's failure report stops
// the rollout with its reason; the other connector is never ordered, not
// even in later windows, until an admin runs upgrade --now.
func TestRolloutStopsOnReportedFailure(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		r := newRolloutEnv(t, dsn)
		r.publish("2.0")
		r.openWindow()
		r.step()
		if o := r.beat(r.alice, "1.0", &cpapi.UpgradeReport{Version: "2.0", State: cpapi.UpgradeFailed, Reason: "rolled back: no heartbeat after boot"}); o != nil {
			t.Errorf("the failure report was answered with the order again: %+v", o)
		}
		r.step()
		ro := r.rollout()
		if ro.State != cpapi.RolloutStopped || ro.Reason != "Alice-1 failed to upgrade to 2.0: rolled back: no heartbeat after boot" {
			t.Fatalf("after the failure: %+v", ro)
		}
		if !strings.HasPrefix(detail(ro, r.alice.name), "failed | Alice-1 failed to upgrade to 2.0") || !strings.Contains(detail(ro, r.bob.name), "the rollout stopped (Alice-1 failed)") {
			t.Errorf("connectors: %+v", ro.Connectors)
		}
		if c := r.connector(r.alice.name); c.UpgradeTarget != "" || c.UpgradeState != cpapi.UpgradeFailed || c.UpgradeReason != "rolled back: no heartbeat after boot" {
			t.Errorf("Alice after the failure: %+v", c)
		}
		for range 3 { // this window and the next week's
			r.clock.Advance(time.Hour)
			r.beatAll("1.0", "1.0")
			r.step()
		}
		r.clock.Advance(7*24*time.Hour - 3*time.Hour)
		r.beatAll("1.0", "1.0")
		r.step()
		if o := r.ordered(); o != nil {
			t.Fatalf("ordered after the stop: %v", o)
		}
		if !strings.Contains(r.logBuf.String(), "rollout stopped") {
			t.Error("the stop is not logged")
		}
		g, err := r.admin.UpgradeNow(context.Background(), "g")
		if err != nil {
			t.Fatal(err)
		}
		if g.Rollout.State != cpapi.RolloutUpgrading || !g.Rollout.Now {
			t.Errorf("after upgrade --now: %+v", g.Rollout)
		}
		if o := r.ordered(); len(o) != 1 {
			t.Errorf("after upgrade --now: ordered %v", o)
		}
	})
}

// TestRolloutTimeout: a connector not back healthy on the target within
// the timeout stops the rollout.
func TestRolloutTimeout(t *testing.T) {
	r := newRolloutEnv(t, "")
	r.publish("2.0")
	r.openWindow()
	r.step()
	for range 4 {
		r.clock.Advance(testUpgradeTimeout / 4)
		r.beat(r.bob, "1.0", nil)
		r.step()
	}
	ro := r.rollout()
	if ro.State != cpapi.RolloutStopped || !strings.HasPrefix(ro.Reason, "Alice-1 did not come back healthy on 2.0 within 5m0s; last seen 2026-11-22 12:00:00 UTC, running 1.0 (unreachable)") {
		t.Fatalf("after the timeout: %+v", ro)
	}
	r.beatAll("1.0", "1.0")
	r.step()
	if o := r.ordered(); o != nil {
		t.Errorf("ordered after the timeout: %v", o)
	}
}

// TestUpgradeNowOutsideTheWindow: upgrade --now orders at once outside
// the window and ends with the rollout.
func TestUpgradeNowOutsideTheWindow(t *testing.T) {
	r := newRolloutEnv(t, "")
	r.publish("2.0")
	g, err := r.admin.UpgradeNow(context.Background(), "g")
	if err != nil {
		t.Fatal(err)
	}
	if g.Rollout.WindowOpen || !g.Rollout.Now || g.Rollout.State != cpapi.RolloutUpgrading {
		t.Errorf("upgrade now: %+v", g.Rollout)
	}
	r.clock.Advance(10 * time.Second)
	r.beatAll("2.0", "1.0")
	r.step()
	r.clock.Advance(10 * time.Second)
	r.beatAll("2.0", "2.0")
	r.step()
	if ro := r.rollout(); ro.State != cpapi.RolloutIdle || ro.Now {
		t.Errorf("after the rollout: %+v", ro)
	}
	if _, err := r.admin.UpgradeNow(context.Background(), "nope"); !cpapi.IsCode(err, cpapi.CodeNotFound) {
		t.Errorf("unknown group: %v", err)
	}
}

// TestPinnedAndLatest: a pinned group goes to its version, not the newest;
// a connector newer than the target is left alone; an unpublished version
// is refused with the published ones.
func TestPinnedAndLatest(t *testing.T) {
	r := newRolloutEnv(t, "")
	r.publish("2.0")
	r.publish("3.0")
	ctx := context.Background()
	v := "2.0"
	if _, err := r.admin.EditGroup(ctx, cpapi.GroupSpec{Name: "g", TargetVersion: &v}); err != nil {
		t.Fatal(err)
	}
	r.beatAll("1.0", "3.0")
	r.openWindow()
	r.step()
	if o := r.ordered(); strings.Join(o, ",") != r.alice.name+"→2.0" {
		t.Errorf("pinned to 2.0: %v", o)
	}
	ro := r.rollout()
	if ro.Target != "2.0" || !strings.HasPrefix(detail(ro, r.bob.name), "newer | newer than the target 2.0; left alone") {
		t.Errorf("pinned: %+v", ro)
	}
	r.beatAll("2.0", "3.0")
	r.step()
	if o := r.ordered(); o != nil {
		t.Errorf("Bob (newer) was ordered: %v", o)
	}
	latest := cpapi.TargetLatest
	g, err := r.admin.EditGroup(ctx, cpapi.GroupSpec{Name: "g", TargetVersion: &latest})
	if err != nil || g.TargetVersion != "" || g.Rollout.Target != "3.0" {
		t.Fatalf("latest: %+v %v", g, err)
	}
	r.step()
	if o := r.ordered(); strings.Join(o, ",") != r.alice.name+"→3.0" {
		t.Errorf("latest: %v", o)
	}
	bad := "9.9"
	_, err = r.admin.EditGroup(ctx, cpapi.GroupSpec{Name: "g", TargetVersion: &bad})
	if !cpapi.IsCode(err, cpapi.CodeBadRequest) || !strings.Contains(err.Error(), "published: 3.0, 2.0") {
		t.Errorf("unpublished version: %v", err)
	}
	_, err = r.admin.CreateGroup(ctx, cpapi.GroupSpec{Name: "h", TargetVersion: &bad})
	if !cpapi.IsCode(err, cpapi.CodeBadRequest) {
		t.Errorf("create with an unpublished version: %v", err)
	}
	if _, err := r.admin.Group(ctx, "h"); !cpapi.IsCode(err, cpapi.CodeNotFound) {
		t.Errorf("the refused group was created: %v", err)
	}
}

// TestAllowDowngrade: a group pinned to an older release with
// allow_downgrade brings a newer connector down, and the order tells the
// connector the downgrade is allowed; without a pinned version it is
// refused.
func TestAllowDowngrade(t *testing.T) {
	r := newRolloutEnv(t, "")
	r.publish("2.0")
	r.publish("3.0")
	ctx := context.Background()
	yes := true
	latest := cpapi.TargetLatest
	if _, err := r.admin.EditGroup(ctx, cpapi.GroupSpec{Name: "g", TargetVersion: &latest, AllowDowngrade: &yes}); !cpapi.IsCode(err, cpapi.CodeBadRequest) || !strings.Contains(err.Error(), "pinned version") {
		t.Errorf("allow_downgrade with latest: %v", err)
	}
	v := "2.0"
	g, err := r.admin.EditGroup(ctx, cpapi.GroupSpec{Name: "g", TargetVersion: &v, AllowDowngrade: &yes})
	if err != nil || !g.AllowDowngrade {
		t.Fatalf("pin 2.0 with allow_downgrade: %+v %v", g, err)
	}
	r.beatAll("2.0", "3.0")
	r.openWindow()
	r.step()
	if o := r.ordered(); strings.Join(o, ",") != r.bob.name+"→2.0" {
		t.Fatalf("ordered %v, want Bob down to 2.0", o)
	}
	if o := r.beat(r.bob, "3.0", nil); o == nil || o.Version != "2.0" || !o.AllowDowngrade {
		t.Errorf("Bob's order: %+v, want 2.0 with allow_downgrade", o)
	}
	if o := r.beat(r.alice, "2.0", nil); o != nil {
		t.Errorf("Alice (on the target) got an order: %+v", o)
	}
}

// releaseFiles lists DATA/releases.
func releaseFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "releases"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// TestPublish: a good bundle is recorded, listed and stored; publishing
// it again is the same release; another bundle with its version, a
// bundle signed by another key and a damaged one are refused and leave
// nothing behind.
func TestPublish(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		key, pub := releaseKey(t)
		e := newEnvTuned(t, t.TempDir(), dsn, func(c *controlplane.Config) { c.ReleaseKeys = []ed25519.PublicKey{pub} })
		ctx := context.Background()
		b := makeBundle(t, key, "1.2.0")
		rel, err := e.admin.PublishRelease(ctx, bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		if rel.Name != "outpost-connector" || rel.Version != "1.2.0" || rel.Architecture != "amd64" || rel.Size != int64(len(b)) || rel.ImageSize != 64<<10 || len(rel.SHA256) != 64 || !rel.PublishedAt.Equal(e.clock.Now()) {
			t.Errorf("release %+v", rel)
		}
		stored, err := os.ReadFile(filepath.Join(e.dir, "releases", "outpost-connector-1.2.0.bundle"))
		if err != nil || !bytes.Equal(stored, b) {
			t.Fatalf("stored bundle: %d bytes, %v", len(stored), err)
		}
		if again, err := e.admin.PublishRelease(ctx, bytes.NewReader(b), int64(len(b))); err != nil || again != rel {
			t.Errorf("the same bytes again: %+v %v", again, err)
		}
		e.publishNewer(key, "1.10.0")
		rs, err := e.admin.Releases(ctx)
		if err != nil || len(rs) != 2 || rs[0].Version != "1.10.0" || rs[1] != rel {
			t.Errorf("list: %+v %v", rs, err)
		}
		if got, err := e.admin.Release(ctx, "1.2.0"); err != nil || got != rel {
			t.Errorf("get: %+v %v", got, err)
		}
		if _, err := e.admin.Release(ctx, "7"); !cpapi.IsCode(err, cpapi.CodeNotFound) {
			t.Errorf("get unknown: %v", err)
		}
		files := strings.Join(releaseFiles(t, e.dir), ",")

		other, _ := releaseKey(t)
		otherSigned := makeBundle(t, other, "1.3.0")
		tampered := append([]byte(nil), makeBundle(t, key, "1.4.0")...)
		tampered[len(tampered)/2] ^= 0xff
		var sameVersion bytes.Buffer // 1.2.0 again, another image
		if _, err := release.Write(&sameVersion, release.Info{Name: "outpost-connector", Version: "1.2.0", Architecture: "amd64"}, release.Contents{Image: bytes.NewReader(bytes.Repeat([]byte("other..."), 512)), Size: 4096, Kernel: []byte("kernel")}, key, t.TempDir()); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name   string
			body   []byte
			code   string
			phrase string
		}{
			{"signed by another key", otherSigned, cpapi.CodeBadBundle, "--release-key"},
			{"tampered payload", tampered, cpapi.CodeBadBundle, "damaged"},
			{"not a bundle", []byte("hello"), cpapi.CodeBadBundle, "not a release bundle"},
			{"another bundle with a published version", sameVersion.Bytes(), cpapi.CodeExists, "already published"},
		} {
			_, err := e.admin.PublishRelease(ctx, bytes.NewReader(tc.body), int64(len(tc.body)))
			if !cpapi.IsCode(err, tc.code) || !strings.Contains(err.Error(), tc.phrase) {
				t.Errorf("%s: %v, want %s naming %q", tc.name, err, tc.code, tc.phrase)
			}
			if got := strings.Join(releaseFiles(t, e.dir), ","); got != files {
				t.Errorf("%s: DATA/releases holds %s, want %s", tc.name, got, files)
			}
		}
		if rs, _ := e.admin.Releases(ctx); len(rs) != 2 {
			t.Errorf("after the refusals: %+v", rs)
		}
		if strings.Contains(e.logBuf.String(), e.token) {
			t.Error("the admin token is in the log")
		}
	})
}

func (e *env) publishNewer(key ed25519.PrivateKey, version string) {
	e.t.Helper()
	b := makeBundle(e.t, key, version)
	if _, err := e.admin.PublishRelease(context.Background(), bytes.NewReader(b), int64(len(b))); err != nil {
		e.t.Fatal(err)
	}
}

// TestPublishWithoutReleaseKey: a server without --release-key refuses
// to publish, saying how to configure one, and writes nothing.
func TestPublishWithoutReleaseKey(t *testing.T) {
	e := newEnv(t, "")
	key, _ := releaseKey(t)
	b := makeBundle(t, key, "1.0")
	_, err := e.admin.PublishRelease(context.Background(), bytes.NewReader(b), int64(len(b)))
	if !cpapi.IsCode(err, cpapi.CodeNoReleaseKey) || !strings.Contains(err.Error(), "outpost server --release-key FILE.pub") {
		t.Errorf("publish without a key: %v", err)
	}
	// A large body is refused before it is sent (Expect: 100-continue),
	// so the client reads the refusal, not a reset connection.
	big := make([]byte, 32<<20)
	if _, err := e.admin.PublishRelease(context.Background(), bytes.NewReader(big), int64(len(big))); !cpapi.IsCode(err, cpapi.CodeNoReleaseKey) {
		t.Errorf("publish of 32 MiB without a key: %v", err)
	}
	req, _ := http.NewRequest("POST", e.url+cpapi.PathReleases, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Errorf("status %d, want 409", resp.StatusCode)
	}
	if files := releaseFiles(t, e.dir); len(files) != 0 {
		t.Errorf("DATA/releases: %v", files)
	}
}

// TestBundleDownload: a connector downloads a bundle over mutual TLS, an
// admin with the token; without either, or as a revoked connector, the
// download is refused.
func TestBundleDownload(t *testing.T) {
	r := newRolloutEnv(t, "")
	rel := r.publish("2.0")
	want, err := os.ReadFile(filepath.Join(r.dir, "releases", "outpost-connector-2.0.bundle"))
	if err != nil {
		t.Fatal(err)
	}
	get := func(c *http.Client, token string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", r.url+cpapi.Path(cpapi.PathReleaseBundle, "2.0"), nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if st, b := get(r.alice.c, ""); st != 200 || !bytes.Equal(b, want) || int64(len(b)) != rel.Size {
		t.Errorf("connector download: %d, %d bytes", st, len(b))
	}
	if st, _ := get(r.http, ""); st != http.StatusUnauthorized {
		t.Errorf("without a certificate or token: %d", st)
	}
	if st, _ := get(r.http, "wrong"); st != http.StatusUnauthorized {
		t.Errorf("with a wrong token: %d", st)
	}
	var buf bytes.Buffer
	if n, err := r.admin.DownloadBundle(context.Background(), "2.0", &buf); err != nil || n != rel.Size || !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("admin download: %d %v", n, err)
	}
	if _, err := r.admin.DownloadBundle(context.Background(), "3.0", &buf); !cpapi.IsCode(err, cpapi.CodeNotFound) {
		t.Errorf("unknown version: %v", err)
	}
	if _, err := r.admin.RevokeConnector(context.Background(), r.bob.name); err != nil {
		t.Fatal(err)
	}
	if st, _ := get(r.bob.c, ""); st != http.StatusForbidden {
		t.Errorf("revoked connector: %d", st)
	}
}
