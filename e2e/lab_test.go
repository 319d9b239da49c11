package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	outpostlab "github.com/outpost-appliance/outpost/lab"
)

func labOptions(t testing.TB) outpostlab.Options {
	if os.Geteuid() != 0 {
		t.Skip("outpost lab needs root")
	}
	return outpostlab.Options{Dir: filepath.Join(t.TempDir(), "lab"), Count: 2, Image: applianceImage(t), MemoryMiB: 2048, Outpost: outpostBin(t)}
}

func labVM(t *testing.T, dir, name string) outpostlab.VMStatus {
	t.Helper()
	s, err := outpostlab.GetStatus(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range s.VMs {
		if v.Name == name || v.VM == name {
			return v
		}
	}
	t.Fatalf("no VM %s in %+v", name, s.VMs)
	return outpostlab.VMStatus{}
}

// TestLabPair brings up a pair with the real lab: both enroll, named after
// the key; stopping one shows it unreachable while the other stays
// healthy; started again it is healthy under the same name with no second
// enrollment; `down` leaves no process, namespace or overlay behind.
func TestLabPair(t *testing.T) {
	o := labOptions(t)
	var progress strings.Builder
	o.Progress = &progress
	st, err := outpostlab.Up(context.Background(), o)
	if err != nil {
		t.Fatalf("lab up: %v\n%s", err, progress.String())
	}
	downDone := false
	t.Cleanup(func() {
		if !downDone {
			outpostlab.Down(o.Dir)
		}
	})
	var names []string
	for _, v := range st.VMs {
		names = append(names, v.Name)
		if v.Health != "healthy" || v.Group != "lab" || !strings.HasPrefix(v.Address, "10.88.0.") || v.ToEnrolled == "" {
			t.Errorf("after up: %+v", v)
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"Lab-1", "Lab-2"}) {
		t.Errorf("connectors %v, want Lab-1 and Lab-2", names)
	}
	for _, want := range []string{"booting", "configuring", "Lab-1: healthy", "Lab-2: healthy"} {
		if !strings.Contains(progress.String(), want) {
			t.Errorf("progress never showed %q:\n%s", want, progress.String())
		}
	}

	if err := outpostlab.Stop(context.Background(), o.Dir, "Lab-1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Lab-1 unreachable", 2*time.Minute, func() bool { return labVM(t, o.Dir, "Lab-1").Health == "unreachable" })
	if v := labVM(t, o.Dir, "Lab-2"); v.Health != "healthy" {
		t.Errorf("Lab-2 while Lab-1 is off: %+v", v)
	}
	if err := outpostlab.Start(context.Background(), o.Dir, "Lab-1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Lab-1 healthy again", 3*time.Minute, func() bool { return labVM(t, o.Dir, "Lab-1").Health == "healthy" })
	s, _ := outpostlab.GetStatus(context.Background(), o.Dir)
	var admin struct {
		UseCount int64 `json:"use_count"`
	}
	out, err := exec.Command("ip", "netns", "exec", s.Namespace, o.Outpost, "keys", "show", "Lab", "--json", "--config", s.AdminConf, "--server", "https://"+outpostlab.BridgeIP+":"+outpostlab.CPPort).Output()
	if err != nil {
		t.Fatalf("keys show: %v", err)
	}
	json.Unmarshal(out, &admin)
	if admin.UseCount != 2 {
		t.Errorf("the key was used %d times for a pair and a restart, want 2", admin.UseCount)
	}

	raw, _ := os.ReadFile(filepath.Join(o.Dir, outpostlab.StateFile))
	var state outpostlab.State
	json.Unmarshal(raw, &state)
	if err := outpostlab.Down(o.Dir); err != nil {
		t.Fatal(err)
	}
	downDone = true
	for _, p := range append([]outpostlab.Proc{state.Server, state.Dnsmasq, state.Chronyd}, state.VMs[0].Proc, state.VMs[1].Proc) {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID) + "/stat"); err == nil && !strings.Contains(string(b), ") Z ") {
			t.Errorf("process %d (%s) still runs after down", p.PID, p.Comm)
		}
	}
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), state.Namespace) {
		t.Errorf("namespace %s left behind", state.Namespace)
	}
	for _, v := range state.VMs {
		if _, err := os.Stat(v.Dir); !os.IsNotExist(err) {
			t.Errorf("VM directory (overlay) %s left behind", v.Dir)
		}
	}
	if _, err := os.Stat(o.Image); err != nil {
		t.Errorf("down removed the base image: %v", err)
	}
	if _, err := outpostlab.GetStatus(context.Background(), o.Dir); err == nil {
		t.Error("status finds a lab after down")
	}
}

// TestLabRefuses: a second up in the same directory, a directory written by
// another version, too little memory.
func TestLabRefuses(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("outpost lab needs root")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, outpostlab.StateFile), []byte(`{"version": 99}`), 0o600)
	if _, err := outpostlab.GetStatus(context.Background(), dir); err == nil || !strings.Contains(err.Error(), "another version") {
		t.Errorf("another version's lab: %v", err)
	}
	if _, err := outpostlab.Up(context.Background(), outpostlab.Options{Dir: dir, Image: "x"}); err == nil || !strings.Contains(err.Error(), "already up") || !strings.Contains(err.Error(), "lab down") {
		t.Errorf("second up: %v", err)
	}
	if err := outpostlab.Check(20, 1<<20); err == nil || !strings.Contains(err.Error(), "too little free memory") || !strings.Contains(err.Error(), "MiB available") {
		t.Errorf("memory check: %v", err)
	}
}

// BenchmarkLabUpPair: `lab up --pair` with the image built, to both
// healthy. The goal is 45 s under TCG on 2 cores.
func BenchmarkLabUpPair(b *testing.B) {
	o := labOptions(b)
	for i := 0; i < b.N; i++ {
		o.Dir = filepath.Join(b.TempDir(), "lab")
		start := time.Now()
		if _, err := outpostlab.Up(context.Background(), o); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "s-to-pair-healthy")
		outpostlab.Down(o.Dir)
	}
}
