package images

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-appliance/outpost/appliance"
)

const bootDeadline = "connector/files/boot-deadline"

// TestBootDeadline runs the boot deadline script under a fake root, with
// systemctl and journalctl replaced by scripts that record their
// arguments (the real ones would reboot this machine): it does nothing on
// an ordinary or a blessed boot, and on a trial boot not blessed it keeps
// the reason and reboots.
func TestBootDeadline(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	script, err := os.ReadFile(bootDeadline)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{appliance.LoaderBootCountPathVar, appliance.BlessedFile, appliance.TrialFailureFile, appliance.MarkerFile} {
		if !strings.Contains(string(script), "$root"+p+"\n") {
			t.Errorf("%s does not use %s (package appliance)", bootDeadline, p)
		}
	}

	run := func(t *testing.T, trial, blessed bool) (root, calls string) {
		t.Helper()
		root, bin := t.TempDir(), t.TempDir()
		calls = filepath.Join(bin, "calls")
		for name, out := range map[string]string{"systemctl": "activating", "journalctl": "Control connection state: connecting (dial tcp: i/o timeout)"} {
			stub := "#!/bin/sh\necho \"" + name + " $*\" >>" + calls + "\n[ \"$1\" = reboot ] || echo '" + out + "'\n"
			if err := os.WriteFile(filepath.Join(bin, name), []byte(stub), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		write := func(p, content string) {
			full := filepath.Join(root, p)
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		write(appliance.MarkerFile, string(appliance.Marker("outpost-connector", "1.4.0")))
		write("/dev/console", "")
		write("/proc/uptime", "301.57 560.10\n")
		if trial {
			write(appliance.LoaderBootCountPathVar, "\x06\x00\x00\x00x")
		}
		if blessed {
			write(appliance.BlessedFile, "")
		}
		cmd := exec.Command(sh, bootDeadline)
		cmd.Env = []string{"OUTPOST_ROOT=" + root, "PATH=" + bin + ":/usr/bin:/bin"}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("boot-deadline: %v\n%s", err, out)
		}
		b, _ := os.ReadFile(calls)
		return root, string(b)
	}

	t.Run("ordinary boot", func(t *testing.T) {
		root, calls := run(t, false, false)
		if calls != "" {
			t.Errorf("ran %q", calls)
		}
		if _, err := os.Stat(filepath.Join(root, appliance.TrialFailureFile)); err == nil {
			t.Error("wrote a trial failure")
		}
	})
	t.Run("blessed trial boot", func(t *testing.T) {
		if _, calls := run(t, true, true); calls != "" {
			t.Errorf("ran %q", calls)
		}
	})
	t.Run("trial boot not blessed", func(t *testing.T) {
		root, calls := run(t, true, false)
		if !strings.HasSuffix(calls, "systemctl reboot\n") {
			t.Errorf("did not reboot: %q", calls)
		}
		got, err := os.ReadFile(filepath.Join(root, appliance.TrialFailureFile))
		want := "1.4.0 did not confirm a healthy boot within 301 s of booting: outpost-connector.service is activating, last logged: Control connection state: connecting (dial tcp: i/o timeout)\n"
		if err != nil || string(got) != want {
			t.Errorf("trial failure = %q, %v; want %q", got, err, want)
		}
		if console, _ := os.ReadFile(filepath.Join(root, "dev/console")); !strings.Contains(string(console), "rebooting into the previous system") {
			t.Errorf("console: %q", console)
		}
	})
}
