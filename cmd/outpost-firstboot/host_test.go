package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-appliance/outpost/appliance"
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
	needTools(t, "unshare", "mount", "find")
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
