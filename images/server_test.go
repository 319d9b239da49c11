package images

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-appliance/outpost/internal/testtool"
)

const serverUnit = "server/outpost-server.service"

// TestServerUnitIsHardened: the control plane's unit runs as its own user
// with a private state directory and the sandbox options, and parses.
func TestServerUnitIsHardened(t *testing.T) {
	b, err := os.ReadFile(serverUnit)
	if err != nil {
		t.Fatal(err)
	}
	set := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]"):
			section = l
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not KEY=VALUE in a section: %q", serverUnit, n, l)
			}
			set[section+k] = append(set[section+k], v)
		}
	}
	for k, want := range map[string]string{
		"[Service]DynamicUser": "yes", "[Service]User": "outpost", "[Service]ProtectSystem": "strict",
		"[Service]StateDirectory": "outpost", "[Service]StateDirectoryMode": "0700", "[Service]NoNewPrivileges": "yes",
		"[Service]PrivateTmp": "yes", "[Service]ProtectHome": "yes", "[Service]UMask": "0077",
		"[Service]CapabilityBoundingSet": "CAP_NET_BIND_SERVICE", "[Install]WantedBy": "multi-user.target",
	} {
		if got := set[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s: %s = %q, want %q", serverUnit, k, got, want)
		}
	}
	if exec := set["[Service]ExecStart"]; len(exec) != 1 || !strings.Contains(exec[0], "outpost server --data ${STATE_DIRECTORY}") {
		t.Errorf("ExecStart %q does not run outpost server on the state directory", exec)
	}
}

// TestServerUnitVerifies runs systemd-analyze verify on the unit (with
// ExecStart pointing at a binary that exists here): any complaint fails.
func TestServerUnitVerifies(t *testing.T) {
	testtool.Need(t, "systemd-analyze")
	b, err := os.ReadFile(serverUnit)
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(t.TempDir(), filepath.Base(serverUnit))
	os.WriteFile(unit, bytes.ReplaceAll(b, []byte("/usr/bin/outpost "), []byte("/bin/true ")), 0o644)
	out, err := exec.Command("systemd-analyze", "verify", unit).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command("systemd-analyze", "security", "--offline=yes", "--threshold=30", unit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: exposure above 3.0: %v\n%s", err, out)
	}
}
