package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vmware/govmomi/simulator"

	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/cpclient"
	"github.com/outpost-appliance/outpost/deploy"
	"github.com/outpost-appliance/outpost/firstboot/enroll"
	"github.com/outpost-appliance/outpost/internal/cptest"
	"github.com/outpost-appliance/outpost/internal/govctest"
	"github.com/outpost-appliance/outpost/provkey"
)

// deploySim is vcsim (a vCenter, a cluster of 2 hosts) in-process with
// govc's environment set for the test, counting the uploads through NFC.
func deploySim(t *testing.T) (env govctest.Env, uploads *atomic.Int64) {
	t.Helper()
	model := simulator.VPX()
	model.ClusterHost = 2
	if err := model.Create(); err != nil {
		t.Fatal(err)
	}
	model.Service.TLS = new(tls.Config)
	srv := model.Service.NewServer()
	t.Cleanup(func() { srv.Close(); model.Remove() })
	uploads = new(atomic.Int64)
	inner := srv.Server.Config.Handler
	srv.Server.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/nfc/") && (r.Method == http.MethodPut || r.Method == http.MethodPost) {
			uploads.Add(1)
		}
		inner.ServeHTTP(w, r)
	})
	u := *srv.URL
	pass, _ := u.User.Password()
	user := u.User.Username()
	u.User = nil
	env = govctest.Env{"GOVC_URL=" + u.String(), "GOVC_USERNAME=" + user, "GOVC_PASSWORD=" + pass, "GOVC_INSECURE=1",
		"GOVC_CLUSTER=DC0_C0", "GOVC_NETWORK=VM Network"}
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		t.Setenv(k, v)
	}
	return env, uploads
}

// deployCP starts the real control plane in-process on loopback and
// returns its admin client and the flags that point the CLI at it.
func deployCP(t *testing.T) (*cpclient.Client, []string) {
	t.Helper()
	s := cptest.Start(t, cptest.Options{})
	return s.Admin, []string{"--config", s.AdminConf, "--server", s.Config.Server}
}

// TestDeployGroup runs 'outpost deploy --group' in-process against the real
// control plane and vcsim: it creates a key named --name with exactly
// --count uses and deploys the pair with it; a rerun reuses that key (no
// second key, no second upload). A key with fewer uses left than --count,
// and an exhausted one, are refused before anything is uploaded or made.
func TestDeployGroup(t *testing.T) {
	env, uploads := deploySim(t)
	cp, cpFlags := deployCP(t)
	govc := govctest.Govc(t)
	ctx := context.Background()
	if _, err := cp.CreateGroup(ctx, cpapi.GroupSpec{Name: "melbourne"}); err != nil {
		t.Fatal(err)
	}
	ova := filepath.Join(t.TempDir(), "c.ova")
	copyTestOVA(t, ova)
	deployCmd := func(name string, count string) (string, error) {
		var out, errb bytes.Buffer
		args := append([]string{"deploy", "--ova", ova, "--group", "melbourne", "--name", name, "--count", count, "--no-wait"}, cpFlags...)
		err := run(ctx, args, nil, &out, &errb)
		return out.String() + errb.String(), err
	}
	groupKeys := func() []cpapi.KeyInfo {
		t.Helper()
		ks, err := cp.Keys(ctx, cpapi.KeyFilter{Group: "melbourne"})
		if err != nil {
			t.Fatal(err)
		}
		return ks
	}

	out, err := deployCmd("Melbourne", "2")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	ks := groupKeys()
	if len(ks) != 1 || ks[0].Name != "Melbourne" || ks[0].MaxUses != 2 || ks[0].UseCount != 0 {
		t.Fatalf("keys in group melbourne after deploy --count 2: %+v, want one key Melbourne with exactly 2 uses", ks)
	}
	kt, err := cp.RevealKey(ctx, "Melbourne")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, kt.Text) {
		t.Errorf("deploy printed the key:\n%s", out)
	}
	for _, vm := range []string{"Melbourne-1", "Melbourne-2"} {
		if info := govctest.Run(t, govc, env, "vm.info", "-e", "-json", vm); !strings.Contains(info, kt.Text) {
			t.Errorf("%s does not carry the key the control plane made in its vApp properties", vm)
		}
	}
	if n := uploads.Load(); n != 1 {
		t.Errorf("%d uploads for the pair, want 1", n)
	}

	// The same command again: the same key, nothing new.
	if out, err := deployCmd("Melbourne", "2"); err != nil {
		t.Fatalf("rerun: %v\n%s", err, out)
	}
	if ks2 := groupKeys(); len(ks2) != 1 || ks2[0].ID != ks[0].ID || ks2[0].MaxUses != 2 {
		t.Errorf("keys after the rerun: %+v, want only the first one (%s)", ks2, ks[0].ID)
	}
	if n := uploads.Load(); n != 1 {
		t.Errorf("%d uploads after the rerun, want still 1", n)
	}

	// Sydney has 1 use and 2 VMs are asked for; Perth's one use is spent.
	if _, err := cp.CreateKey(ctx, cpapi.KeySpec{Name: "Sydney", Group: "melbourne", MaxUses: 1}); err != nil {
		t.Fatal(err)
	}
	perth, err := cp.CreateKey(ctx, cpapi.KeySpec{Name: "Perth", Group: "melbourne", MaxUses: 1})
	if err != nil {
		t.Fatal(err)
	}
	pk, err := provkey.Parse(perth.Text)
	if err != nil {
		t.Fatal(err)
	}
	hw, _ := net.ParseMAC("00:50:56:00:aa:01")
	fp, _ := enroll.Fingerprint(hw, "4c4c4544-0042-3010-8030-b7c04f4e3132")
	id, err := enroll.NewIdentity("perth", fp, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&enroll.Client{Key: pk, Attempts: 1}).Enroll(ctx, id); err != nil {
		t.Fatal(err)
	}
	// Sydney is refused by deploy's own check of the uses left; Perth
	// already by the control plane, which does not reveal a spent key.
	for _, tc := range []struct {
		name, count, want string
		exhausted         bool
	}{
		{"Sydney", "2", "1 of 1 uses left and 2 VMs", true},
		{"Perth", "1", "used 1 of 1 times", false},
	} {
		before := len(groupKeys())
		out, err := deployCmd(tc.name, tc.count)
		if err == nil || errors.Is(err, deploy.ErrKeyExhausted) != tc.exhausted || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("deploy --name %s --count %s = %v, want %q refused\n%s", tc.name, tc.count, err, tc.want, out)
		}
		if n := uploads.Load(); n != 1 {
			t.Errorf("%s: %d uploads, want none after the pair's", tc.name, n)
		}
		if found := govctest.Run(t, govc, env, "find", "/", "-type", "m", "-name", tc.name+"*"); strings.TrimSpace(found) != "" {
			t.Errorf("%s: refused, yet the simulator has:\n%s", tc.name, found)
		}
		if after := len(groupKeys()); after != before {
			t.Errorf("%s: %d keys before, %d after", tc.name, before, after)
		}
	}
}
