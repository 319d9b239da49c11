package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/internal/nstest"
)

// runAsHost runs the real binary with no --root, as on an ordinary host,
// but inside new mount, network and UTS namespaces where /etc, /var/lib and
// /run are empty tmpfs mounts: whatever it writes lands there (and is
// listed on stdout as "written: PATH"), the host's interfaces, files and
// host name are out of reach, and the clock cannot be stepped because no
// time server is reachable from an empty network namespace. prep runs
// first, inside.
func runAsHost(t *testing.T, prep string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	nstest.Need(t, "unshare", "mount", "find")
	script := `set -e
mount -t tmpfs tmpfs /var/lib
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /etc
` + prep + `
set +e
"$@"
code=$?
find /etc /var/lib /run -mindepth 1 -type f | sed 's/^/written: /' >&3
exit $code
`
	cmd := exec.Command("unshare", append([]string{"--mount", "--net", "--uts", "--propagation", "private", "--fork",
		"sh", "-c", script, "sh", binary}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stderr = &errb
	cmd.Stdout = &out
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.ExtraFiles = []*os.File{w}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var written bytes.Buffer
	done := make(chan struct{})
	go func() { written.ReadFrom(r); close(done) }()
	err = cmd.Wait()
	<-done
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String() + written.String(), errb.String()
}

// TestRefusesOnHostWithoutMarker: run with no arguments on a machine that
// is not an outpost appliance, first boot says so, exits non-zero and
// writes nothing. With the builder's marker it goes on (and fails later,
// for want of a NIC, having written its state).
func TestRefusesOnHostWithoutMarker(t *testing.T) {
	code, out, errOut := runAsHost(t, "", "--dhcp-timeout", "1s")
	if code != exitFailure || !strings.Contains(errOut, "this machine is not an outpost appliance: "+appliance.MarkerFile+" is missing") ||
		!strings.Contains(errOut, "--root DIR") {
		t.Errorf("without the marker: exit %d, stderr:\n%s", code, errOut)
	}
	if strings.Contains(out, "written:") {
		t.Errorf("without the marker, files were written:\n%s", out)
	}

	prep := fmt.Sprintf("mkdir -p %s\nprintf '%%s' '%s' > %s", filepath.Dir(appliance.MarkerFile),
		appliance.Marker("outpost-connector", "1.0.0"), appliance.MarkerFile)
	code, out, errOut = runAsHost(t, prep, "--dhcp-timeout", "1s")
	if code != exitFailure || strings.Contains(errOut, "not an outpost appliance") || !strings.Contains(errOut, "no Ethernet interface found") {
		t.Errorf("with the marker: exit %d, stderr:\n%s", code, errOut)
	}
	if !strings.Contains(out, "written: /var/lib/outpost/firstboot.json") {
		t.Errorf("with the marker, first boot did not run:\n%s", out)
	}
}

// TestNamespaceVirtualInterfacesOnly: in a namespace holding only software
// interfaces (an ifb, as a host's traffic shaping has, and a bridge), first
// boot picks none of them on its own and leaves them down; named with
// --interface, one is configured.
func TestNamespaceVirtualInterfacesOnly(t *testing.T) {
	nstest.Need(t)
	ns := fmt.Sprintf("obv%d%d", os.Getpid()%100000, time.Now().UnixNano()%1000)
	nstest.Sh(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	nstest.Sh(t, "ip", "-n", ns, "link", "add", "ifb7", "type", "ifb")
	nstest.Sh(t, "ip", "-n", ns, "link", "add", "br7", "type", "bridge")
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "proc"), 0o755)
	os.WriteFile(filepath.Join(root, "proc/meminfo"), []byte("MemTotal:        4028116 kB\n"), 0o644)

	out, err := exec.Command("ip", "netns", "exec", ns, binary, "--root", root, "--dhcp-timeout", "2s").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no Ethernet interface found") || !strings.Contains(string(out), "ifb7 (ifb)") {
		t.Errorf("first boot among virtual interfaces: %v\n%s", err, out)
	}
	links, _ := exec.Command("ip", "-n", ns, "-br", "link").CombinedOutput()
	for _, l := range strings.Split(string(links), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] != "lo" && f[1] != "DOWN" {
			t.Errorf("a virtual interface was brought up: %s", l)
		}
	}

	conf := filepath.Join(t.TempDir(), "static.conf")
	os.WriteFile(conf, []byte("outpost.ipv4.mode=Static\noutpost.ipv4.address=10.78.0.10/24\noutpost.ipv4.gateway=10.78.0.1\noutpost.dns.servers=10.78.0.1\n"), 0o644)
	out, _ = exec.Command("ip", "netns", "exec", ns, binary, "--root", root, "--interface", "ifb7", "--config", conf).CombinedOutput()
	addr, _ := exec.Command("ip", "-n", ns, "-4", "addr", "show", "ifb7").CombinedOutput()
	if !strings.Contains(string(addr), "inet 10.78.0.10/24") {
		t.Errorf("--interface ifb7 was not configured:\n%s\nfirst boot said:\n%s", addr, out)
	}
}
