package config

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/firstboot/sysroot"
	"github.com/outpost-appliance/outpost/internal/testiso"
)

// makeISO writes an ISO 9660 image holding files, as the OVF ISO transport
// or a seed CD-ROM would.

func TestOVFTransportAndSeedISOs(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "dev"), 0o755)
	testiso.Make(t, filepath.Join(dir, "dev/sr0"), "OVF ENV", map[string]string{OVFEnvFile: ovfEnvDoc})
	testiso.Make(t, filepath.Join(dir, "dev/sr1"), "OUTPOST", map[string]string{SeedFile: "outpost.hostname=from-seed\noutpost.ntp.servers=192.0.2.123\n"})
	root, _ := sysroot.New(dir)
	c, sets, err := Loader{Root: root}.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(sets) != 2 || sets[0].Source != "/dev/sr0/ovf-env.xml" || sets[1].Source != "/dev/sr1/outpost.cfg" {
		t.Fatalf("sources = %+v", sets)
	}
	// The seed outranks the OVF environment; the OVF values it lacks stay.
	if c.Hostname != "from-seed" || c.Address.String() != "192.0.2.10/24" || c.NTPServers[0] != "192.0.2.123" {
		t.Errorf("config = %+v", c)
	}
}

func TestCurlyQuotedKeyRejectedNamingTheProperty(t *testing.T) {
	key := testKey(t)
	_, err := Validate(map[string]Value{appliance.PropProvisionKey: {Text: "\u201c" + key + "\u201d", Source: KeyFile}})
	if err == nil {
		t.Fatal("a curly-quoted key was accepted")
	}
	want := "outpost.provision_key (from /opt/outpost/var/provision_key): error: line 1, column 1: U+201C LEFT DOUBLE QUOTATION MARK"
	if got := err.Error(); !strings.Contains(got, want) || strings.Contains(got, key[10:]) {
		t.Errorf("err = %v", err)
	}
}

func TestQuotedKeyRepairedWithWarning(t *testing.T) {
	key := testKey(t)
	c, err := Validate(map[string]Value{appliance.PropProvisionKey: {Text: "\"" + key + "\"\r\n", Source: KeyFile}})
	if err != nil {
		t.Fatal(err)
	}
	if !c.HasKey || c.Key.Reveal() != key || len(c.Warnings) == 0 {
		t.Errorf("key not repaired: has=%v warnings=%v", c.HasKey, c.Warnings)
	}
	for _, w := range c.Warnings {
		if strings.Contains(w, key[10:]) {
			t.Errorf("warning holds the key: %s", w)
		}
	}
}
