package upgrade_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/firstboot"
	"github.com/outpost-appliance/outpost/release"
	"github.com/outpost-appliance/outpost/upgrade"
	"github.com/outpost-appliance/outpost/upgrade/upgradetest"
)

func espPath(e upgrade.ESP, name string) string {
	return filepath.Join(e.Dir, filepath.FromSlash(name))
}

type disk = upgradetest.Disk

var (
	buildDisk  = upgradetest.BuildDisk
	extractESP = upgradetest.ExtractESP
	keyPair    = upgradetest.KeyPair
	makeBundle = upgradetest.Bundle
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func sumRange(t testing.TB, path string, off, n int64) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, io.NewSectionReader(f, off, n))
	must(t, err)
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

// snapshot is the state an installation may change: root B's bytes and
// every file of the ESP.
func snapshot(t testing.TB, d disk, esp upgrade.ESP) string {
	t.Helper()
	var b strings.Builder
	s := sumRange(t, d.Raw, d.RootB.Offset, d.RootB.Size)
	b.Write(s[:])
	filepath.WalkDir(esp.Dir, func(p string, de fs.DirEntry, err error) error {
		if err == nil && !de.IsDir() {
			c, _ := os.ReadFile(p)
			sum := sha256.Sum256(c)
			b.WriteString(p + string(sum[:]))
		}
		return nil
	})
	return b.String()
}

// TestInstallBlessAndFallback installs release 2 over a disk built at 1:
// root B holds release 2's root byte for byte, the ESP its kernel and an
// entry with one try that boots root B with the running options. Blessing
// on root B drops the counter; a trial used up while still on root A is a
// failed upgrade, found once and cleaned up.
func TestInstallBlessAndFallback(t *testing.T) {
	key, pub := keyPair(t)
	v1 := buildDisk(t, "lab", "1")
	v2 := buildDisk(t, "lab", "2")
	bundle := makeBundle(t, v2, "lab", "2", key)
	esp := extractESP(t, v1.Raw)
	if got := upgradetest.EntryFiles(t, esp); len(got) != 1 || got[0] != appliance.EntryFile(1, appliance.SlotA, -1) {
		t.Fatalf("the built disk's entries are %q", got)
	}
	in := upgrade.Installer{Disk: v1.Raw, Running: v1.RootA.GUID, ESP: esp, Trusted: []ed25519.PublicKey{pub}, Name: "lab", Architecture: "amd64", Version: "1"}
	inst, err := in.Install(context.Background(), bundle)
	must(t, err)
	want := appliance.EntryFile(2, appliance.SlotB, 1)
	if inst.Slot != appliance.SlotB || inst.Entry != want || inst.Manifest.Version != "2" {
		t.Errorf("installed %+v, want slot b, entry %s", inst, want)
	}
	if sumRange(t, v1.Raw, v1.RootB.Offset, v1.RootB.Size) != sumRange(t, v2.Raw, v2.RootA.Offset, v2.RootA.Size) {
		t.Error("root B is not release 2's root")
	}
	if k, _ := os.ReadFile(espPath(esp, appliance.SlotKernel("b"))); !bytes.Equal(k, v2.Kernel) {
		t.Errorf("slot b's kernel on the ESP is %q", k)
	}
	if i, _ := os.ReadFile(espPath(esp, appliance.SlotInitrd("b"))); !bytes.Equal(i, v2.Initrd) {
		t.Error("slot b's initrd on the ESP is not release 2's")
	}
	es, err := esp.Entries()
	must(t, err)
	if len(es) != 2 || es[0].File != want || es[0].Root != strings.ToUpper(v1.RootB.GUID) || es[0].Version != "2" ||
		!strings.Contains(es[0].Options, "console=ttyS0,115200") || !strings.Contains(es[0].Options, "panic=10") {
		t.Fatalf("entries after install: %+v", es)
	}
	if left, _ := filepath.Glob(espPath(esp, "/outpost/b/*.new")); len(left) != 0 {
		t.Errorf("staged files left: %q", left)
	}

	// systemd-boot tries it: +1-0 becomes +0-1 before it boots root B.
	tried := filepath.Join(espPath(esp, appliance.EntriesDir), "outpost-000002-b+0-1.conf")
	must(t, os.Rename(espPath(esp, appliance.EntriesDir+"/"+want), tried))
	slotB := upgrade.Slot{Name: appliance.SlotB, Partition: v1.RootB}
	slotA := upgrade.Slot{Name: appliance.SlotA, Partition: v1.RootA}

	// Variant 1: it came back on A (never blessed): a failed trial.
	tr, err := esp.FailedTrial(slotA)
	must(t, err)
	if tr == nil || tr.Version != "2" {
		t.Fatalf("failed trial = %+v, want version 2", tr)
	}
	if got := upgradetest.EntryFiles(t, esp); len(got) != 1 || got[0] != appliance.EntryFile(1, appliance.SlotA, -1) {
		t.Errorf("entries after the failed trial: %q", got)
	}
	if _, err := os.Stat(espPath(esp, appliance.SlotKernel("b"))); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the failed slot's kernel is still on the ESP: %v", err)
	}
	if tr, err := esp.FailedTrial(slotA); tr != nil || err != nil {
		t.Errorf("second FailedTrial = %+v, %v; want it found once", tr, err)
	}

	// Variant 2: install again, tried, running on B: blessing keeps it.
	_, err = in.Install(context.Background(), bundle)
	must(t, err)
	must(t, os.Rename(espPath(esp, appliance.EntriesDir+"/"+appliance.EntryFile(2, appliance.SlotB, 1)), tried))
	trial, err := esp.Bless(slotB)
	must(t, err)
	if !trial {
		t.Error("Bless on the tried entry reported no trial")
	}
	if got := upgradetest.EntryFiles(t, esp); len(got) != 2 || got[0] != appliance.EntryFile(2, appliance.SlotB, -1) {
		t.Errorf("entries after blessing: %q", got)
	}
	if tr, err := esp.FailedTrial(slotB); tr != nil || err != nil {
		t.Errorf("FailedTrial after a blessed boot = %+v, %v", tr, err)
	}
	if trial, err := esp.Bless(slotB); trial || err != nil {
		t.Errorf("second Bless = %v, %v; want no trial", trial, err)
	}

	// The next upgrade goes to A, the one not running, and is newest.
	in.Running, in.Version = v1.RootB.GUID, "2"
	b3 := makeBundle(t, buildDisk(t, "lab", "3"), "lab", "3", key)
	inst, err = in.Install(context.Background(), b3)
	must(t, err)
	if inst.Slot != appliance.SlotA || inst.Entry != appliance.EntryFile(3, appliance.SlotA, 1) {
		t.Errorf("third install: %+v", inst)
	}
	if got := upgradetest.EntryFiles(t, esp); len(got) != 2 || got[1] != appliance.EntryFile(2, appliance.SlotB, -1) {
		t.Errorf("entries after the third install: %q (root A's old entry must be gone)", got)
	}
}

// TestInstallRefuses: every bundle that must not be installed is refused
// before root B or the ESP change.
func TestInstallRefuses(t *testing.T) {
	key, pub := keyPair(t)
	other, _ := keyPair(t)
	v1 := buildDisk(t, "lab", "5")
	v2 := buildDisk(t, "lab", "6")
	good := makeBundle(t, v2, "lab", "6", key)
	esp := extractESP(t, v1.Raw)
	in := upgrade.Installer{Disk: v1.Raw, Running: v1.RootA.GUID, ESP: esp, Trusted: []ed25519.PublicKey{pub}, Name: "lab", Architecture: "amd64", Version: "5"}

	tampered := filepath.Join(t.TempDir(), "tampered.bundle")
	b, err := os.ReadFile(good)
	must(t, err)
	hdr := bytes.Index(b, []byte(release.PayloadName+"\x00"))
	if hdr < 0 {
		t.Fatal("no root image member in the bundle")
	}
	b[hdr+512+40] ^= 0x55 // inside the compressed root image (its data follows its 512-byte header)
	must(t, os.WriteFile(tampered, b, 0o644))
	older := buildDisk(t, "lab", "4")

	for _, c := range []struct {
		name   string
		bundle string
		in     func(upgrade.Installer) upgrade.Installer
		want   error
	}{
		{"signed by another key", makeBundle(t, v2, "lab", "6", other), nil, release.ErrSignature},
		{"tampered payload", tampered, nil, release.ErrHash},
		{"another appliance", makeBundle(t, v2, "other", "6", key), nil, release.ErrAppliance},
		{"older version", makeBundle(t, older, "lab", "4", key), nil, release.ErrDowngrade},
		{"no trusted key", good, func(i upgrade.Installer) upgrade.Installer { i.Trusted = nil; return i }, nil},
		{"another architecture", good, func(i upgrade.Installer) upgrade.Installer { i.Architecture = "arm64"; return i }, release.ErrArchitecture},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := snapshot(t, v1, esp)
			x := in
			if c.in != nil {
				x = c.in(in)
			}
			_, err := x.Install(context.Background(), c.bundle)
			if err == nil || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("Install: %v, want %v", err, c.want)
			}
			if snapshot(t, v1, esp) != before {
				t.Error("the refused bundle changed root B or the ESP")
			}
			t.Logf("refused: %v", err)
		})
	}

	// A downgrade is accepted when allowed.
	in.AllowDowngrade = true
	if _, err := in.Install(context.Background(), makeBundle(t, older, "lab", "4", key)); err != nil {
		t.Errorf("downgrade with AllowDowngrade: %v", err)
	}
}

// TestInstallRefusesTooLarge: a root image larger than the inactive
// partition is refused before anything is written.
func TestInstallRefusesTooLarge(t *testing.T) {
	key, pub := keyPair(t)
	v1 := buildDisk(t, "lab", "1")
	esp := extractESP(t, v1.Raw)
	big := filepath.Join(t.TempDir(), "big.img")
	f, err := os.Create(big)
	must(t, err)
	must(t, f.Truncate(v1.RootB.Size+1<<20))
	f.WriteAt([]byte("data"), 4096)
	f.Close()
	r, err := os.Open(big)
	must(t, err)
	defer r.Close()
	out := filepath.Join(t.TempDir(), "big.bundle")
	w, err := os.Create(out)
	must(t, err)
	_, err = release.Write(w, release.Info{Name: "lab", Version: "9", Architecture: "amd64"},
		release.Contents{Image: r, Size: v1.RootB.Size + 1<<20, Kernel: []byte("k")}, key, t.TempDir())
	must(t, err)
	w.Close()
	before := snapshot(t, v1, esp)
	in := upgrade.Installer{Disk: v1.Raw, Running: v1.RootA.GUID, ESP: esp, Trusted: []ed25519.PublicKey{pub}, Name: "lab", Architecture: "amd64", Version: "1"}
	if _, err := in.Install(context.Background(), out); !errors.Is(err, release.ErrTooLarge) {
		t.Fatalf("Install of a too large image: %v", err)
	}
	if snapshot(t, v1, esp) != before {
		t.Error("the refused bundle changed root B or the ESP")
	}
}

// TestLive finds the disk and root of a running system from the kernel
// command line, /dev/disk/by-partuuid and sysfs, laid out as Linux does.
func TestLive(t *testing.T) {
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "dev/disk/by-partuuid"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "dev/vda"), nil, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "dev/vda2"), nil, 0o644))
	uuid := "0a1b2c3d-0000-4000-8000-00000000000a"
	must(t, os.Symlink("../../vda2", filepath.Join(dir, "dev/disk/by-partuuid", uuid)))
	must(t, os.MkdirAll(filepath.Join(dir, "sys/devices/pci0000:00/virtio2/block/vda/vda2"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "sys/devices/pci0000:00/virtio2/block/vda/vda2/partition"), []byte("2\n"), 0o644))
	must(t, os.MkdirAll(filepath.Join(dir, "sys/class/block"), 0o755))
	must(t, os.Symlink("../../devices/pci0000:00/virtio2/block/vda/vda2", filepath.Join(dir, "sys/class/block/vda2")))
	cmdline := filepath.Join(dir, "cmdline")
	must(t, os.WriteFile(cmdline, []byte("BOOT_IMAGE=x root=PARTUUID="+uuid+" rw console=ttyS0\n"), 0o644))
	disk, root, err := upgrade.Live(cmdline, filepath.Join(dir, "dev/disk/by-partuuid"), filepath.Join(dir, "sys/class/block"))
	must(t, err)
	if disk != filepath.Join(dir, "dev/vda") || root != strings.ToUpper(uuid) {
		t.Errorf("Live = %s, %s", disk, root)
	}
	must(t, os.WriteFile(cmdline, []byte("root=/dev/vda2 rw\n"), 0o644))
	if _, _, err := upgrade.Live(cmdline, filepath.Join(dir, "dev/disk/by-partuuid"), filepath.Join(dir, "sys/class/block")); err == nil || !strings.Contains(err.Error(), "root=PARTUUID") {
		t.Errorf("Live without root=PARTUUID: %v", err)
	}
}

// TestCarryOver: the machine's own files reach the new root with their
// modes and links; root's password replaces the release's entry, other
// accounts of the new release stay.
func TestCarryOver(t *testing.T) {
	from, to := t.TempDir(), t.TempDir()
	write := func(dir, p, c string, mode fs.FileMode) {
		must(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755))
		must(t, os.WriteFile(filepath.Join(dir, p), []byte(c), mode))
		must(t, os.Chmod(filepath.Join(dir, p), mode))
	}
	write(from, "etc/machine-id", "0123456789abcdef0123456789abcdef\n", 0o444)
	write(from, "etc/systemd/network/10-outpost.network", "[Match]\nMACAddress=00:50:56:00:00:01\n", 0o644)
	write(from, "etc/ssh/ssh_host_ed25519_key", "PRIVATE", 0o600)
	write(from, "etc/ssh/ssh_host_ed25519_key.pub", "PUBLIC", 0o644)
	write(from, "etc/shadow", "root:$6$old:19000:0:99999:7:::\nsshd:*:19000::::::\n", 0o640)
	must(t, os.MkdirAll(filepath.Join(from, "etc/systemd/system/multi-user.target.wants"), 0o755))
	must(t, os.Symlink("/lib/systemd/system/ssh.service", filepath.Join(from, "etc/systemd/system/multi-user.target.wants/ssh.service")))
	write(to, "etc/machine-id", "", 0o444)
	write(to, "etc/shadow", "root:*:20000:0:99999:7:::\nsshd:*:20000::::::\nnewuser:*:20000::::::\n", 0o640)

	must(t, upgrade.CarryOver(from, to))
	for p, want := range map[string]string{
		"etc/machine-id":                         "0123456789abcdef0123456789abcdef\n",
		"etc/systemd/network/10-outpost.network": "[Match]\nMACAddress=00:50:56:00:00:01\n",
		"etc/ssh/ssh_host_ed25519_key":           "PRIVATE",
		"etc/shadow":                             "root:$6$old:19000:0:99999:7:::\nsshd:*:20000::::::\nnewuser:*:20000::::::\n",
	} {
		if b, err := os.ReadFile(filepath.Join(to, p)); err != nil || string(b) != want {
			t.Errorf("%s in the new root = %q, %v; want %q", p, b, err, want)
		}
	}
	if fi, err := os.Stat(filepath.Join(to, "etc/ssh/ssh_host_ed25519_key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("host key mode: %v %v", fi, err)
	}
	if l, err := os.Readlink(filepath.Join(to, "etc/systemd/system/multi-user.target.wants/ssh.service")); err != nil || l != "/lib/systemd/system/ssh.service" {
		t.Errorf("ssh enablement link = %q, %v", l, err)
	}
}

// TestCarryOverCoversFirstBoot: the files first boot writes for access
// are among those carried (the list lives here; first boot names them).
func TestCarryOverCoversFirstBoot(t *testing.T) {
	if !slices.Contains(upgrade.MachineFiles, firstboot.AuthorizedKeysFile) {
		t.Errorf("MachineFiles lacks %s", firstboot.AuthorizedKeysFile)
	}
	if upgrade.ShadowFile != firstboot.ShadowFile {
		t.Errorf("root's password is carried from %s, first boot writes %s", upgrade.ShadowFile, firstboot.ShadowFile)
	}
}
