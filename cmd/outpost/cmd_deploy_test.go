package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/artifact"
	"github.com/outpost-appliance/outpost/builder"
	"github.com/outpost-appliance/outpost/images"
	"github.com/outpost-appliance/outpost/internal/govctest"
	"github.com/outpost-appliance/outpost/provkey"
)

func TestDeployHelp(t *testing.T) {
	t.Setenv("OUTPOST_CONFIG", "x")
	os.Unsetenv("OUTPOST_CONFIG")
	t.Setenv("OUTPOST_SERVER", "x")
	os.Unsetenv("OUTPOST_SERVER")
	for _, name := range []string{"deploy", "deploy destroy"} {
		var out bytes.Buffer
		if err := run(context.Background(), append(strings.Fields(name), "--help"), nil, &out, &out); err != nil {
			t.Fatal(err)
		}
		golden(t, strings.ReplaceAll(name, " ", "-")+"-help.txt", out.String())
	}
}

// TestDeployCommand runs the command in-process against vcsim with govc's
// environment: a dry run changes nothing and shows the key redacted; a
// deploy with the key on stdin makes the pair; destroy removes it.
func TestDeployCommand(t *testing.T) {
	sim := govctest.Simulator(t)
	for _, e := range sim.Env {
		k, v, _ := strings.Cut(e, "=")
		t.Setenv(k, v)
	}
	t.Setenv("GOVC_NETWORK", "VM Network")
	t.Setenv("GOVC_CLUSTER", "DC0_C0")
	t.Setenv("OUTPOST_CONFIG", filepath.Join(t.TempDir(), "none.conf"))
	govc := govctest.Govc(t)
	ova := filepath.Join(t.TempDir(), "c.ova")
	copyTestOVA(t, ova)
	k, err := provkey.Generate("cp.example.com", provkey.Pin{9}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var out, errb bytes.Buffer
	err = run(ctx, []string{"deploy", "--ova", ova, "--key", "-", "--name", "Melbourne", "--dry-run"}, strings.NewReader(k.Reveal()+"\n"), &out, &errb)
	if err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	if strings.Contains(out.String()+errb.String(), k.Reveal()) || !strings.Contains(out.String(), k.Redacted()) || !strings.Contains(out.String(), "Melbourne-2") {
		t.Errorf("dry run output:\n%s", out.String())
	}
	if ls := govctest.Run(t, govc, sim.Env, "vm.info", "Melbourne-*"); strings.Contains(ls, "Melbourne") {
		t.Errorf("dry run made VMs:\n%s", ls)
	}
	out.Reset()
	errb.Reset()
	err = run(ctx, []string{"deploy", "--ova", ova, "--key", "-", "--name", "Melbourne", "--no-wait"}, strings.NewReader(k.Reveal()), &out, &errb)
	if err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	if strings.Contains(out.String()+errb.String(), k.Reveal()) || !strings.Contains(errb.String(), "uploaded") {
		t.Errorf("deploy output:\n%s\n%s", out.String(), errb.String())
	}
	if info := govctest.Run(t, govc, sim.Env, "vm.info", "Melbourne-1", "Melbourne-2"); strings.Count(info, "poweredOn") != 2 {
		t.Errorf("vm.info:\n%s", info)
	}
	out.Reset()
	if err := run(ctx, []string{"deploy", "destroy", "--name", "Melbourne"}, nil, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "removed Melbourne-template") {
		t.Errorf("destroy:\n%s", out.String())
	}
}

// copyTestOVA writes the shipped spec's OVA around a small blank disk.
func copyTestOVA(t *testing.T, dst string) {
	t.Helper()
	spec, _, err := builder.ParseSpec(images.ConnectorPath, images.Connector)
	if err != nil {
		t.Fatal(err)
	}
	raw := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(raw, []byte("test"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(raw, 4<<20); err != nil {
		t.Fatal(err)
	}
	m, _ := spec.MAC()
	job := &artifact.Job{Spec: spec, MAC: m, RawPath: raw, Epoch: time.Unix(0, 0)}
	defer job.Close()
	ova, _ := artifact.Lookup("ova")
	if err := ova.Write(context.Background(), job, dst); err != nil {
		t.Fatal(err)
	}
}
