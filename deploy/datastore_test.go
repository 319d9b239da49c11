package deploy

import (
	"strings"
	"testing"

	"github.com/vmware/govmomi/simulator"

	"github.com/outpost-appliance/outpost/internal/govctest"
)

// TestDatastores deploys a pair with Datastores a,b on a vCenter with two
// datastores: the plan puts the VMs on different ones, and govc finds each
// VM's files and datastore where the plan said.
func TestDatastores(t *testing.T) {
	model := simulator.VPX()
	model.ClusterHost = 2
	model.Datastore = 2
	s := startSim(t, model)
	govc := govctest.Govc(t)
	cfg := Config{Conn: s.conn, Cluster: "DC0_C0", Network: "VM Network", OVA: testOVA(t, false), Key: testKey(t),
		Name: "Darwin", Count: 2, Datastores: []string{"LocalDS_1", "LocalDS_0"}}
	p, _, err := run(t, cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"Darwin-1": "LocalDS_1", "Darwin-2": "LocalDS_0"}
	for _, v := range p.VMs {
		if v.Datastore != want[v.Name] {
			t.Errorf("plan puts %s on %q, want %q", v.Name, v.Datastore, want[v.Name])
		}
		// The datastore property, by name, and where the .vmx is.
		ref := strings.TrimSpace(govctest.Run(t, govc, s.env, "object.collect", "-s", "vm/"+v.Name, "datastore"))
		if ref == "" || strings.Contains(ref, ",") {
			t.Fatalf("%s: datastore property %q, want one datastore", v.Name, ref)
		}
		if got := strings.TrimSpace(govctest.Run(t, govc, s.env, "object.collect", "-s", ref, "name")); got != want[v.Name] {
			t.Errorf("%s is on datastore %q, want %q", v.Name, got, want[v.Name])
		}
		vmx := govctest.Run(t, govc, s.env, "object.collect", "-s", "vm/"+v.Name, "config.files.vmPathName")
		if !strings.HasPrefix(vmx, "["+want[v.Name]+"] ") {
			t.Errorf("%s: files at %q, want on %s", v.Name, vmx, want[v.Name])
		}
	}
	// A rerun finds them where they are.
	p, _, err = run(t, cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range p.VMs {
		if !v.Exists || v.Datastore != want[v.Name] {
			t.Errorf("rerun plan: %s exists %v on %q, want %q", v.Name, v.Exists, v.Datastore, want[v.Name])
		}
	}
}
