package store

import (
	"context"
	"sync"
	"testing"
	"time"
)

func rolloutStore(t *testing.T, dsn string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.CreateGroup(context.Background(), Group{Name: "g", CreatedAt: time.Unix(1, 0)}); err != nil {
		t.Fatal(err)
	}
	for i, n := range []string{"A-1", "A-2", "A-3"} {
		if _, err := s.db.Exec(s.q(`INSERT INTO connectors (name, key_id, key_name, group_name, signing_ca, fingerprint, pubkey_hash, nonce, serial, cert_pem, cert_expires, enrolled_at, state)
			VALUES (?, 'k', 'A', 'g', 'Connector', 'mac=x', ?, 'n', ?, 'PEM', 1, 1, 'active')`), n, n, "0"+string(rune('a'+i))); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// TestOneUpgradeAtATime: of many concurrent orders for connectors of one
// group (two stores on one database stand for two servers), exactly one
// succeeds; the slot is free again after FinishUpgrade, and a stop keeps
// it closed until ResumeRollout.
func TestOneUpgradeAtATime(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := rolloutStore(t, dsn)
		other := s
		if s.Postgres() {
			var err error
			if other, err = Open(ctx, dsn); err != nil {
				t.Fatal(err)
			}
			defer other.Close()
		}
		at := time.UnixMilli(1800000000000).UTC()
		var wg sync.WaitGroup
		errs := make([]error, 12)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st := s
				if i%2 == 1 {
					st = other
				}
				errs[i] = st.OrderUpgrade(ctx, "g", []string{"A-1", "A-2", "A-3"}[i%3], "2.0", at)
			}()
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch err {
			case nil:
				ok++
			case ErrConflict:
			default:
				t.Fatal(err)
			}
		}
		if ok != 1 {
			t.Fatalf("%d orders succeeded, want exactly 1", ok)
		}
		g, _ := s.Group(ctx, "g")
		cs, _ := s.Connectors(ctx, "g")
		ordered := 0
		for _, c := range cs {
			if c.Upgrade.Target != "" {
				ordered++
				if c.Name != g.Rollout.Connector || c.Upgrade.Target != "2.0" || !c.Upgrade.OrderedAt.Equal(at) {
					t.Errorf("ordered %+v, group slot %q", c.Upgrade, g.Rollout.Connector)
				}
			}
		}
		if ordered != 1 {
			t.Fatalf("%d connectors hold an order", ordered)
		}
		first := g.Rollout.Connector

		if err := s.ReportUpgrade(ctx, first, "failed", "bad disk", "2.0", at.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := s.StopRollout(ctx, "g", "A-9", "2.0", "x"); err != ErrConflict {
			t.Errorf("stop by a connector without the slot: %v, want ErrConflict", err)
		}
		if err := s.StopRollout(ctx, "g", first, "2.0", first+" failed"); err != nil {
			t.Fatal(err)
		}
		g, _ = s.Group(ctx, "g")
		if g.Rollout != (Rollout{Stopped: first + " failed", Failed: first, Version: "2.0"}) {
			t.Errorf("stopped rollout: %+v", g.Rollout)
		}
		c, _ := s.ConnectorByName(ctx, first)
		if c.Upgrade.Target != "" || c.Upgrade.State != "failed" || c.Upgrade.Reason != "bad disk" || c.Upgrade.Version != "2.0" {
			t.Errorf("failed connector: %+v", c.Upgrade)
		}
		if err := s.OrderUpgrade(ctx, "g", "A-3", "2.0", at); err != ErrConflict {
			t.Errorf("order while stopped: %v, want ErrConflict", err)
		}
		// A new target clears the stop.
		g.TargetVersion = "2.1"
		if err := s.UpdateGroup(ctx, g); err != nil {
			t.Fatal(err)
		}
		if g, _ = s.Group(ctx, "g"); g.Rollout.Stopped != "" || g.TargetVersion != "2.1" {
			t.Errorf("after a new target: %+v", g)
		}
		if err := s.StopRollout(ctx, "g", "", "2.1", "again"); err != nil { // no slot held: stops anyway
			t.Fatal(err)
		}
		if err := s.ResumeRollout(ctx, "g", true); err != nil {
			t.Fatal(err)
		}
		if g, _ = s.Group(ctx, "g"); g.Rollout != (Rollout{Now: true}) {
			t.Errorf("after resume: %+v", g.Rollout)
		}
		if err := s.OrderUpgrade(ctx, "g", "A-3", "2.1", at); err != nil {
			t.Fatal(err)
		}
		if err := s.FinishUpgrade(ctx, "g", "A-3"); err != nil {
			t.Fatal(err)
		}
		if err := s.EndNow(ctx, "g"); err != nil {
			t.Fatal(err)
		}
		if g, _ = s.Group(ctx, "g"); g.Rollout != (Rollout{}) {
			t.Errorf("after finish: %+v", g.Rollout)
		}
		if c, _ := s.ConnectorByName(ctx, "A-3"); c.Upgrade.Target != "" {
			t.Errorf("A-3 keeps its order: %+v", c.Upgrade)
		}
	})
}

func TestReleases(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := rolloutStore(t, dsn)
		r := Release{Version: "1.2.0", Name: "outpost-connector", Architecture: "amd64", Size: 10, SHA256: "ab", ImageSize: 20, PublishedAt: time.UnixMilli(1800000000000).UTC()}
		if err := s.AddRelease(ctx, r); err != nil {
			t.Fatal(err)
		}
		if err := s.AddRelease(ctx, r); err != ErrExists {
			t.Errorf("second add: %v, want ErrExists", err)
		}
		if got, err := s.ReleaseByVersion(ctx, "1.2.0"); err != nil || got != r {
			t.Errorf("by version: %+v %v", got, err)
		}
		if _, err := s.ReleaseByVersion(ctx, "9"); err != ErrNotFound {
			t.Errorf("unknown version: %v", err)
		}
		if rs, err := s.Releases(ctx); err != nil || len(rs) != 1 {
			t.Errorf("list: %+v %v", rs, err)
		}
		if err := s.DeleteRelease(ctx, "1.2.0"); err != nil {
			t.Fatal(err)
		}
		if rs, _ := s.Releases(ctx); len(rs) != 0 {
			t.Errorf("after delete: %+v", rs)
		}
	})
}
