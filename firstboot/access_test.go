package firstboot

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-appliance/outpost/provkey"
)

const (
	testHash   = "$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/"
	testSSHKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHq8lsCV0p4zS0ZBuJdcgqHIbJ7Y4ZXRGJVqAaFs8gB2 admin@example"
)

// TestAdminAccessFromProperties: a password hash for root at the console,
// an SSH key that enables openssh-server; and the image as it ships, with
// neither, changes nothing.
func TestAdminAccessFromProperties(t *testing.T) {
	cp := newFakeCP(t, "outpost root", 1)
	r := newRig(t, cpKey(t, cp, provkey.PinOf(cp.CA)), cp)
	r.write(t, "etc/shadow", "root:*:20000:0:99999:7:::\ndaemon:*:20000:0:99999:7:::\n")
	var log bytes.Buffer
	r.env.Log = slog.New(slog.NewTextHandler(&log, nil))
	r.write(t, "etc/outpost/defaults", "outpost.admin.password_hash="+testHash+"\noutpost.admin.ssh_key="+testSSHKey+"\n")
	if _, err := r.run(); err != nil {
		t.Fatal(err)
	}
	shadow, _ := os.ReadFile(filepath.Join(r.dir, "etc/shadow"))
	if !strings.HasPrefix(string(shadow), "root:"+testHash+":20000:") || !strings.Contains(string(shadow), "\ndaemon:*:") {
		t.Errorf("shadow:\n%s", shadow)
	}
	ak, err := os.ReadFile(filepath.Join(r.dir, "root/.ssh/authorized_keys"))
	if err != nil || string(ak) != testSSHKey+"\n" {
		t.Errorf("authorized_keys %q, %v", ak, err)
	}
	if fi, err := os.Stat(filepath.Join(r.dir, "root/.ssh/authorized_keys")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("authorized_keys mode: %v %v", fi.Mode(), err)
	}
	if l, err := os.Readlink(filepath.Join(r.dir, "etc/systemd/system/multi-user.target.wants/ssh.service")); err != nil || l != "/lib/systemd/system/ssh.service" {
		t.Errorf("ssh not enabled: %q %v", l, err)
	}
	if strings.Contains(log.String(), "qFmFH") {
		t.Errorf("the log shows the password hash:\n%s", log.String())
	}
	if b, _ := os.ReadFile(filepath.Join(r.dir, StateFile)); bytes.Contains(b, []byte("qFmFH")) {
		t.Error("the state file holds the password hash")
	}
}

func TestAdminAccessNoneByDefault(t *testing.T) {
	cp := newFakeCP(t, "outpost root", 1)
	r := newRig(t, cpKey(t, cp, provkey.PinOf(cp.CA)), cp)
	r.write(t, "etc/shadow", "root:*:20000:0:99999:7:::\n")
	if _, err := r.run(); err != nil {
		t.Fatal(err)
	}
	if shadow, _ := os.ReadFile(filepath.Join(r.dir, "etc/shadow")); string(shadow) != "root:*:20000:0:99999:7:::\n" {
		t.Errorf("shadow changed without a property: %q", shadow)
	}
	if _, err := os.Lstat(filepath.Join(r.dir, "etc/systemd/system/multi-user.target.wants/ssh.service")); !os.IsNotExist(err) {
		t.Error("ssh enabled without a key")
	}
}

// TestPasswordNotAHashRefused: a password where the hash belongs is
// refused, never echoed, and nothing changes.
func TestPasswordNotAHashRefused(t *testing.T) {
	cp := newFakeCP(t, "outpost root", 1)
	r := newRig(t, cpKey(t, cp, provkey.PinOf(cp.CA)), cp)
	r.write(t, "etc/shadow", "root:*:20000:0:99999:7:::\n")
	var log bytes.Buffer
	r.env.Log = slog.New(slog.NewTextHandler(&log, nil))
	r.write(t, "etc/outpost/defaults", "outpost.admin.password_hash=Hunter2-secret\noutpost.admin.ssh_key=ssh-ed25519 notbase64!\n")
	_, err := r.run()
	if err == nil || !strings.Contains(err.Error(), "outpost.admin.password_hash") || !strings.Contains(err.Error(), "not a crypt(3) password hash") ||
		!strings.Contains(err.Error(), "outpost.admin.ssh_key") {
		t.Fatalf("err = %v", err)
	}
	for _, out := range []string{err.Error(), log.String()} {
		if strings.Contains(out, "Hunter2") {
			t.Errorf("the refusal shows the value:\n%s", out)
		}
	}
	if shadow, _ := os.ReadFile(filepath.Join(r.dir, "etc/shadow")); string(shadow) != "root:*:20000:0:99999:7:::\n" {
		t.Errorf("shadow changed: %q", shadow)
	}
	if len(r.net.applied) != 0 {
		t.Errorf("network changed: %v", r.net.applied)
	}
}
