package deploy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/simulator"

	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/cpclient"
	"github.com/outpost-appliance/outpost/firstboot/enroll"
	"github.com/outpost-appliance/outpost/internal/cptest"
	"github.com/outpost-appliance/outpost/internal/govctest"
	"github.com/outpost-appliance/outpost/provkey"
)

// testCP is the real control plane in-process on loopback.
type testCP struct {
	admin *cpclient.Client
	cfg   cpclient.Config // the admin config, pointing at the listener
}

func startCP(t *testing.T) testCP {
	t.Helper()
	s := cptest.Start(t, cptest.Options{HeartbeatInterval: time.Minute})
	return testCP{admin: s.Admin, cfg: s.Config}
}

// connectorFor enrolls through the real enrollment API with key, as first
// boot does (a CSR, a fingerprint of the VM's MAC), and returns a function
// that sends one heartbeat over the connector's mutual TLS.
func (c testCP) connectorFor(t *testing.T, key provkey.Key, mac string) (name string, beat func()) {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	fp, err := enroll.Fingerprint(hw, "4c4c4544-0042-3010-8030-"+strings.ReplaceAll(mac, ":", "")[:12])
	if err != nil {
		t.Fatal(err)
	}
	id, err := enroll.NewIdentity("connector", fp, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := (&enroll.Client{Key: key, Attempts: 1}).Enroll(context.Background(), id)
	if err != nil {
		t.Fatalf("enroll with the deployed key: %v", err)
	}
	cert, err := tls.X509KeyPair([]byte(res.Certificate), id.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(c.cfg.CA))
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}
	t.Cleanup(hc.CloseIdleConnections)
	return res.Name, func() {
		t.Helper()
		b, _ := json.Marshal(cpapi.HeartbeatRequest{Fingerprint: fp, Version: "1.0.0", Uptime: 5})
		resp, err := hc.Post(c.cfg.Server+cpapi.PathHeartbeat, "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("heartbeat of %s: %s", res.Name, resp.Status)
		}
	}
}

// TestWaitControlPlane deploys a pair with a key of the real control plane
// and waits with the admin client: the VMs count as enrolled only once the
// control plane's connectors of their names, enrolled through the real
// enrollment API with the deployed key, are healthy; guestinfo alone does
// not do; a timeout names the VM still open and what to check.
func TestWaitControlPlane(t *testing.T) {
	cp := startCP(t)
	ctx := context.Background()
	if _, err := cp.admin.CreateGroup(ctx, cpapi.GroupSpec{Name: "hobart"}); err != nil {
		t.Fatal(err)
	}
	kt, err := cp.admin.CreateKey(ctx, cpapi.KeySpec{Name: "Hobart", Group: "hobart", MaxUses: 2})
	if err != nil {
		t.Fatal(err)
	}
	key, err := provkey.Parse(kt.Text)
	if err != nil {
		t.Fatal(err)
	}
	s := startSim(t, simulator.ESX())
	govc := govctest.Govc(t)
	cfg := Config{Conn: s.conn, OVA: testOVA(t, false), Key: key, Name: "Hobart", Count: 2}
	p, _, err := run(t, cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close(ctx) //nolint:errcheck

	wait := func(d time.Duration) (map[string]Progress, error) {
		wctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		last := map[string]Progress{}
		err := sess.Wait(wctx, p, cp.admin, "hobart", 20*time.Millisecond, func(pr Progress) { last[pr.VM] = pr })
		return last, err
	}

	// Hobart-1 enrolls and heartbeats; Hobart-2 says "enrolled" in
	// guestinfo but the control plane has never heard of it.
	name1, beat1 := cp.connectorFor(t, key, p.VMs[0].MAC)
	if name1 != "Hobart-1" {
		t.Fatalf("the control plane named the first connector %q, want Hobart-1", name1)
	}
	beat1()
	govctest.Run(t, govc, s.env, "vm.change", "-vm", "Hobart-2", "-e", StatusVar+"=enrolled Hobart-2")
	last, err := wait(time.Second)
	if err == nil || !strings.Contains(err.Error(), "timed out") || !strings.Contains(err.Error(), "Hobart-2") ||
		strings.Contains(err.Error(), "Hobart-1 (") {
		t.Fatalf("Wait = %v, want a timeout naming Hobart-2 only", err)
	}
	for _, want := range []string{"console", "443", "outpost connectors list"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("timeout %q does not say to check %q", err, want)
		}
	}
	if pr := last["Hobart-1"]; !pr.Done || pr.Health != cpapi.HealthHealthy {
		t.Errorf("Hobart-1 progress %+v, want done and healthy", pr)
	}
	if pr := last["Hobart-2"]; pr.Done {
		t.Errorf("Hobart-2 progress %+v: done on guestinfo alone with the control plane at hand", pr)
	}

	// Hobart-2 enrolls: never seen until its first heartbeat, then healthy.
	name2, beat2 := cp.connectorFor(t, key, p.VMs[1].MAC)
	if name2 != "Hobart-2" {
		t.Fatalf("the control plane named the second connector %q, want Hobart-2", name2)
	}
	if last, err := wait(300 * time.Millisecond); err == nil || last["Hobart-2"].Health != cpapi.HealthNeverSeen {
		t.Fatalf("Wait = %v with Hobart-2 never seen (progress %+v), want a timeout", err, last["Hobart-2"])
	}
	beat2()
	last, err = wait(10 * time.Second)
	if err != nil {
		t.Fatalf("Wait = %v with both connectors healthy", err)
	}
	for _, v := range p.VMs {
		if pr := last[v.Name]; !pr.Done || pr.Health != cpapi.HealthHealthy {
			t.Errorf("%s progress %+v, want done and healthy", v.Name, pr)
		}
	}
}
