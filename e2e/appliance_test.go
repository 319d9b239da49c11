package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/internal/testiso"
)

// passwordHash is testPassword as a SHA-512 crypt hash.
func passwordHash(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("openssl", "passwd", "-6", "-salt", "outposte2e", testPassword).Output()
	if err != nil {
		t.Fatalf("openssl passwd: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func fwcfg(props map[string]string) map[string]string {
	var b strings.Builder
	for k, v := range props {
		b.WriteString(k + "=" + v + "\n")
	}
	return map[string]string{"opt/outpost/config": b.String()}
}

// healthy waits until the control plane has a heartbeat from name after
// since, and returns the connector.
func (l *lab) healthy(name string, since time.Time, d time.Duration) cpapi.Connector {
	l.t.Helper()
	var c cpapi.Connector
	waitFor(l.t, name+" heartbeating", d, func() bool {
		var ok bool
		c, ok = l.connector(name)
		return ok && c.State == cpapi.ConnectorActive && c.LastSeen.After(since)
	})
	return c
}

// TestApplianceFwCfg boots the appliance built from the spec with its key
// in fw_cfg: it enrolls with the real control plane and heartbeats; after a
// reboot it is healthy again without a second enrollment; booted with
// another MAC it is blocked, and says why on its console and in
// `connectors list`.
func TestApplianceFwCfg(t *testing.T) {
	l := newLab(t)
	key := l.key("Melbourne", 2)
	mac := "00:50:56:00:e2:01"
	applianceImage(t)
	start := time.Now()
	vm := l.vm("m1", mac, fwcfg(map[string]string{
		appliance.PropProvisionKey:      key,
		appliance.PropAdminPasswordHash: passwordHash(t),
	}), "")
	c := l.healthy("Melbourne-1", start, 4*time.Minute)
	t.Logf("enrolled and heartbeating %s after power-on (version %s)", time.Since(start).Round(time.Second), c.Version)
	waitSerial(t, vm, 0, `Control connection state: connected`, time.Minute)
	if n := l.uses("Melbourne"); n != 1 {
		t.Fatalf("key used %d times after one enrollment", n)
	}
	serial := vm.Serial()
	for _, leak := range []string{key[strings.LastIndex(key, "|")+1:][:20], "$6$outposte2e"} {
		if strings.Contains(serial, leak) {
			t.Errorf("the serial console shows a secret (%q…)", leak[:8])
		}
	}

	// Reboot from the console: healthy again, same name, one use.
	con := login(t, vm)
	if out := con.run("test -s /var/lib/outpost/tls/connector.key && findmnt -n -o SOURCE /var/lib/outpost", 20*time.Second); !strings.Contains(out, "/dev/vda4") {
		t.Errorf("the identity is not on the data partition (vda4):\n%s", out)
	}
	if out := con.run("ls /etc/ssh/ssh_host_* 2>&1; systemctl is-enabled ssh; cat /etc/machine-id | wc -c", 10*time.Second); !strings.Contains(out, "No such file") || !strings.Contains(out, "disabled") {
		t.Errorf("SSH host keys baked in, or ssh enabled without a key property:\n%s", out)
	}
	if out := con.run("journalctl --disk-usage; findmnt -n -o SOURCE /var/log/journal", 10*time.Second); !strings.Contains(out, "vda4") {
		t.Errorf("the journal is not on the data partition:\n%s", out)
	}
	if out := con.run("outpost-connector status; echo exit=$?", 10*time.Second); !strings.Contains(out, "Control connection state: connected") ||
		!strings.Contains(out, "Certificate will expire in") || !strings.Contains(out, "Time skew: ") || !strings.Contains(out, "exit=0") {
		t.Errorf("outpost-connector status:\n%s", out)
	}
	// Reboot as a clean power cycle: shut down from the console, then power
	// on again. (A reset inside QEMU under TCG sometimes never came back
	// from the firmware on a loaded machine.)
	mark := len(vm.Serial())
	before := time.Now()
	con.send("systemctl poweroff\r")
	waitSerial(t, vm, mark, `reboot: Power down|Reached target.*Power-Off`, 2*time.Minute)
	select {
	case <-vm.Done():
	case <-time.After(time.Minute):
		t.Fatal("QEMU did not exit after the appliance powered off")
	}
	vm = l.restart(vm, mac)
	l.healthy("Melbourne-1", before, 4*time.Minute)
	if n := l.uses("Melbourne"); n != 1 {
		t.Errorf("key used %d times after a reboot, want 1", n)
	}
	if cs := l.connectors(); len(cs) != 1 {
		t.Errorf("%d connectors after a reboot, want 1", len(cs))
	}

	// Another MAC on the same disk: blocked.
	mark = len(vm.Serial())
	vm = l.restart(vm, "00:50:56:00:e2:99")
	waitSerial(t, vm, mark, `(?s)Control connection state: blocked.*fingerprint changed`, 4*time.Minute)
	waitFor(t, "Melbourne-1 blocked on the control plane", time.Minute, func() bool {
		c, _ := l.connector("Melbourne-1")
		return c.State == cpapi.ConnectorBlocked && strings.Contains(c.StateReason, "mac")
	})
	list := l.outpost("connectors", "list")
	if !strings.Contains(list, "blocked") {
		t.Errorf("connectors list does not show the block:\n%s", list)
	}
}

// TestApplianceOVFEnvironmentISO gives the key the way vSphere's ISO
// transport does: ovf-env.xml on a CD-ROM.
func TestApplianceOVFEnvironmentISO(t *testing.T) {
	l := newLab(t)
	key := l.key("Sydney", 1)
	iso := filepath.Join(l.dir, "ovf-env.iso")
	env := `<?xml version="1.0" encoding="UTF-8"?>
<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:oe="http://schemas.dmtf.org/ovf/environment/1">
  <PropertySection>
    <Property oe:key="outpost.provision_key" oe:value="` + key + `"/>
    <Property oe:key="outpost.hostname" oe:value="sydney-1"/>
    <Property oe:key="outpost.some_future_setting" oe:value="x"/>
  </PropertySection>
</Environment>
`
	testiso.Make(t, iso, "OVF ENV", map[string]string{"ovf-env.xml": env})
	start := time.Now()
	vm := l.vm("s1", "00:50:56:00:e2:02", nil, iso)
	l.healthy("Sydney-1", start, 4*time.Minute)
	waitSerial(t, vm, 0, `outpost.some_future_setting is not one this appliance knows`, time.Minute)
}

// TestApplianceKeyWrittenByHand boots without a key; an admin logs in on
// the serial console and writes the key file: it enrolls within seconds.
func TestApplianceKeyWrittenByHand(t *testing.T) {
	l := newLab(t)
	key := l.key("Perth", 1)
	vm := l.vm("p1", "00:50:56:00:e2:03", fwcfg(map[string]string{appliance.PropAdminPasswordHash: passwordHash(t)}), "")
	waitSerial(t, vm, 0, `no provisioning key`, 4*time.Minute)
	con := login(t, vm)
	written := time.Now()
	con.run("printf '%s\\n' '"+key+"' > /opt/outpost/var/provision_key", 10*time.Second)
	l.healthy("Perth-1", written, 2*time.Minute)
	t.Logf("enrolled and heartbeating %s after the key was written", time.Since(written).Round(time.Second))
}
