package builder

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/internal/testtool"
)

// TestABLayout checks the disk an upgrade needs: ESP, root A with the
// system, root B of the same size and empty, and a data partition with an
// ext4 e2fsck accepts; the root's /etc/fstab mounts data by PARTUUID.
func TestABLayout(t *testing.T) {
	e2fsck := testtool.Path(t, "e2fsck")
	debugfs := testtool.Path(t, "debugfs")
	dir := t.TempDir()
	writeTree(t, dir)
	raw := filepath.Join(t.TempDir(), "disk.raw")
	res := build(t, dir, raw)

	d, err := diskfs.Open(raw, diskfs.WithOpenMode(diskfs.ReadOnly))
	must(t, err)
	tbl := d.Table.(*gpt.Table)
	d.Close()
	if len(tbl.Partitions) < 4 {
		t.Fatalf("%d partitions, want ESP, root A, root B, data", len(tbl.Partitions))
	}
	p := func(i int) *gpt.Partition { return tbl.Partitions[i-1] }
	a, b, data := p(appliance.RootAPartition), p(appliance.RootBPartition), p(appliance.DataPartition)
	for _, c := range []struct {
		p          *gpt.Partition
		typ, label string
		guid       string
	}{
		{a, appliance.RootPartitionType, appliance.RootALabel, res.RootPartUUID},
		{b, appliance.RootPartitionType, appliance.RootBLabel, appliance.StablePartUUID("test-appliance", "root-b")},
		{data, appliance.DataPartitionType, appliance.DataLabel, appliance.StablePartUUID("test-appliance", "data")},
	} {
		if string(c.p.Type) != c.typ || c.p.Name != c.label || !strings.EqualFold(c.p.GUID, c.guid) {
			t.Errorf("partition %q: type %s GUID %s, want %s %s %s", c.p.Name, c.p.Type, c.p.GUID, c.label, c.typ, c.guid)
		}
	}
	if a.End-a.Start != b.End-b.Start {
		t.Errorf("root A has %d sectors, root B %d: they must be the same size", a.End-a.Start+1, b.End-b.Start+1)
	}
	if !(p(1).End < a.Start && a.End < b.Start && b.End < data.Start) {
		t.Errorf("partitions overlap or are out of order: %+v", tbl.Partitions)
	}
	if !strings.EqualFold(res.DataPartUUID, data.GUID) || !strings.EqualFold(res.RootBPartUUID, b.GUID) {
		t.Errorf("result names %s/%s, table has %s/%s", res.RootBPartUUID, res.DataPartUUID, b.GUID, data.GUID)
	}

	rootB := partition(t, raw, appliance.RootBPartition)
	empty := true
	must(t, eachDataBlock(rootB, func(int64, []byte) error { empty = false; return nil }))
	if !empty {
		t.Error("root B holds data; it must be empty until an upgrade")
	}

	dp := partition(t, raw, appliance.DataPartition)
	if out, err := exec.Command(e2fsck, "-fn", dp).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn data partition: %v\n%s", err, out)
	}
	out, err := exec.Command(debugfs, "-R", "ls -l /", dp).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "journal") || !strings.Contains(string(out), "tls") {
		t.Errorf("data partition root: %v\n%s", err, out)
	}

	esp := p(appliance.ESPPartition)
	if want := appliance.StablePartUUID("test-appliance", "esp"); !strings.EqualFold(esp.GUID, want) || !strings.EqualFold(res.ESPPartUUID, want) {
		t.Errorf("ESP PARTUUID %s (result %s), want the release-independent %s", esp.GUID, res.ESPPartUUID, want)
	}

	root := partition(t, raw, appliance.RootAPartition)
	out, err = exec.Command(debugfs, "-R", "cat /etc/fstab", root).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PARTUUID="+strings.ToLower(data.GUID)+" /var/lib/outpost ext4") {
		t.Errorf("/etc/fstab does not mount the data partition by PARTUUID %s: %v\n%s", data.GUID, err, out)
	}
	if want := "PARTUUID=" + strings.ToLower(esp.GUID) + " /boot/efi vfat " + appliance.ESPMountOptions + " 0 2\n"; !strings.Contains(string(out), want) {
		t.Errorf("/etc/fstab does not mount the ESP by PARTUUID: want %q in\n%s", want, out)
	}
}

// TestOverlay adds, replaces and removes files over a tree.
func TestOverlay(t *testing.T) {
	debugfs := testtool.Path(t, "debugfs")
	dir := t.TempDir()
	writeTree(t, dir)
	must(t, os.MkdirAll(filepath.Join(dir, "etc/ssh"), 0o755))
	for _, k := range []string{"ssh_host_rsa_key", "ssh_host_ed25519_key.pub"} {
		must(t, os.WriteFile(filepath.Join(dir, "etc/ssh", k), []byte("baked"), 0o600))
	}
	host := filepath.Join(t.TempDir(), "agent")
	must(t, os.WriteFile(host, []byte("#!/bin/sh\necho agent\n"), 0o755))
	raw := filepath.Join(t.TempDir(), "disk.raw")
	_, err := Build(context.Background(), testSpec(t), dir, raw, Options{
		Files: []File{
			{Path: "/usr/local/bin/outpost-agent", Mode: 0o755, Source: host},
			{Path: "/etc/hostname", Mode: 0o644, Data: []byte("replaced\n")},
			{Path: "/etc/systemd/system/multi-user.target.wants/agent.service", Mode: 0o777 | os.ModeSymlink, Link: "/etc/systemd/system/agent.service"},
		},
		Remove: []string{"/etc/ssh/ssh_host_*"},
	})
	if err != nil {
		t.Fatal(err)
	}
	root := partition(t, raw, RootIndex)
	run := func(cmd string) string {
		out, err := exec.Command(debugfs, "-R", cmd, root).CombinedOutput()
		if err != nil {
			t.Fatalf("debugfs %s: %v\n%s", cmd, err, out)
		}
		return string(out)
	}
	if got := run("cat /usr/local/bin/outpost-agent"); !strings.Contains(got, "echo agent") {
		t.Errorf("added file: %q", got)
	}
	if got := run("stat /usr/local/bin/outpost-agent"); !strings.Contains(got, "Mode:  0755") {
		t.Errorf("added file mode: %s", got)
	}
	if got := run("cat /etc/hostname"); !strings.Contains(got, "replaced") {
		t.Errorf("replaced file: %q", got)
	}
	if got := run("ls /etc/ssh"); strings.Contains(got, "ssh_host") {
		t.Errorf("removed files still there: %s", got)
	}
	if got := run("stat /etc/systemd/system/multi-user.target.wants/agent.service"); !strings.Contains(got, "Fast link dest: \"/etc/systemd/system/agent.service\"") {
		t.Errorf("symlink: %s", got)
	}
}

// TestESPRoom: the ESP must hold two kernel+initrd sets; the connector's
// (Debian's cloud kernel, 14 MB, and its initrd, 15 MB) fit 256 MiB with
// room to spare.
func TestESPRoom(t *testing.T) {
	if err := espRoom(150<<10, 30<<20, espSize); err != nil {
		t.Errorf("the connector's boot files: %v", err)
	}
	err := espRoom(150<<10, 120<<20, espSize)
	if err == nil || !strings.Contains(err.Error(), "two kernel+initrd sets") {
		t.Errorf("two 120 MiB sets in a 256 MiB ESP: %v", err)
	}
}
