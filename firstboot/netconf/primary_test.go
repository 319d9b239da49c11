package netconf

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/outpost-appliance/outpost/internal/testtool"
)

// inNewNamespace runs fn on a locked thread inside a network namespace the
// test creates with `ip netns add` (and deletes, with every link in it),
// after running each setup command there with `ip -n NS`.
func inNewNamespace(t *testing.T, setup [][]string, fn func(ns string)) {
	t.Helper()
	if os.Geteuid() != 0 {
		testtool.Missing(t, "root (network namespaces)")
	}
	testtool.Need(t, "ip")
	ns := fmt.Sprintf("onc%d%d", os.Getpid()%100000, time.Now().UnixNano()%1000)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", ns, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	for _, args := range setup {
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip -n %s %s: %v\n%s", ns, strings.Join(args, " "), err, out)
		}
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(err) // never return a thread in the wrong namespace to the scheduler
		}
	}()
	fn(ns)
}

// TestPrimaryInterfaceSkipsVirtual: with only software interfaces (ifb,
// bridge, veth, tap, VXLAN, all with Ethernet addresses) no interface is
// chosen on its own; naming one still works. (The dummy module is not
// available on every test machine; it is a kind like the others.)
func TestPrimaryInterfaceSkipsVirtual(t *testing.T) {
	setup := [][]string{
		{"link", "add", "ifbt0", "type", "ifb"},
		{"link", "add", "brt0", "type", "bridge"},
		{"link", "add", "vetht0", "type", "veth", "peer", "name", "vetht1"},
		{"tuntap", "add", "tapt0", "mode", "tap"},
		{"link", "add", "vxlant0", "type", "vxlan", "id", "5", "dstport", "4789"},
	}
	inNewNamespace(t, setup, func(ns string) {
		ifc, err := PrimaryInterface("")
		if err == nil {
			t.Fatalf("PrimaryInterface(\"\") chose %s among software interfaces only", ifc.Name)
		}
		for _, want := range []string{"no Ethernet interface found", "ifbt0 (ifb)", "brt0 (bridge)", "vetht0 (veth)", "tapt0 (tuntap)", "vxlant0 (vxlan)", "--interface"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
		ifc, err = PrimaryInterface("ifbt0")
		if err != nil || ifc.Name != "ifbt0" {
			t.Errorf("PrimaryInterface(ifbt0) = %v, %v", ifc, err)
		}
		for name, want := range map[string]string{"ifbt0": "ifb", "brt0": "bridge", "lo": ""} {
			if kind, err := LinkKind(name); err != nil || kind != want {
				t.Errorf("LinkKind(%s) = %q, %v; want %q", name, kind, err, want)
			}
		}
	})
}
