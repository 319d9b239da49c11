// Package upgradetest builds what upgrade tests need from the real
// builder and release packages: a small appliance disk with A/B roots,
// its EFI system partition as a directory, release keys and bundles.
package upgradetest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	diskfs "github.com/diskfs/go-diskfs"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/builder"
	"github.com/outpost-appliance/outpost/release"
	"github.com/outpost-appliance/outpost/upgrade"
)

// Disk is an appliance disk built by package builder from a small tree.
type Disk struct {
	Raw          string
	Kernel       []byte
	Initrd       []byte
	RootA, RootB upgrade.Partition
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// BuildDisk builds appliance name at version: a 1 GiB disk whose root has
// a kernel, an initrd and some data that tells the versions apart.
func BuildDisk(t testing.TB, name, version string) Disk {
	t.Helper()
	tree := t.TempDir()
	d := Disk{Kernel: []byte("kernel of " + version), Initrd: bytes.Repeat([]byte("initrd "+version+"\n"), 1000)}
	files := map[string][]byte{
		"boot/vmlinuz-6.1.0-1-amd64":    d.Kernel,
		"boot/initrd.img-6.1.0-1-amd64": d.Initrd,
		"usr/share/outpost/version":     []byte(version + "\n"),
		"usr/share/outpost/big":         bytes.Repeat([]byte(version), 300000),
	}
	for p, c := range files {
		full := filepath.Join(tree, p)
		must(t, os.MkdirAll(filepath.Dir(full), 0o755))
		must(t, os.WriteFile(full, c, 0o644))
	}
	loader := filepath.Join(t.TempDir(), "systemd-bootx64.efi")
	must(t, os.WriteFile(loader, []byte("MZ fake systemd-boot"), 0o644))
	spec, _, err := builder.ParseSpec("t.yaml", []byte("name: "+name+"\nversion: '"+version+"'\nhardware: {memory: 4096, disk: {size: 1GiB}}\n"))
	must(t, err)
	d.Raw = filepath.Join(t.TempDir(), "disk.raw")
	if _, err := builder.Build(context.Background(), spec, tree, d.Raw, builder.Options{Epoch: time.Unix(1700000000, 0), Bootloader: loader}); err != nil {
		t.Fatal(err)
	}
	dk, err := upgrade.OpenDisk(d.Raw)
	must(t, err)
	for _, p := range dk.Parts {
		switch p.Number {
		case appliance.RootAPartition:
			d.RootA = p
		case appliance.RootBPartition:
			d.RootB = p
		}
	}
	return d
}

// ExtractESP copies the disk's EFI system partition into a new directory,
// as the appliance has it mounted.
func ExtractESP(t testing.TB, raw string) upgrade.ESP {
	t.Helper()
	dir := t.TempDir()
	d, err := diskfs.Open(raw, diskfs.WithOpenMode(diskfs.ReadOnly))
	must(t, err)
	defer d.Close()
	efs, err := d.GetFilesystem(appliance.ESPPartition)
	must(t, err)
	// go-diskfs reads files of this FAT by path (not its directories):
	// the files the builder writes.
	for _, p := range []string{"/EFI/BOOT/BOOTX64.EFI", "/loader/loader.conf", appliance.EntriesDir + "/" + appliance.EntryFile(1, appliance.SlotA, -1),
		appliance.SlotKernel(appliance.SlotA), appliance.SlotInitrd(appliance.SlotA)} {
		b, err := efs.ReadFile(p)
		must(t, err)
		must(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755))
		must(t, os.WriteFile(filepath.Join(dir, p), b, 0o644))
	}
	return upgrade.ESP{Dir: dir}
}

// EntryFiles lists the outpost loader entries' file names on esp, newest
// generation first.
func EntryFiles(t testing.TB, esp upgrade.ESP) []string {
	t.Helper()
	es, err := esp.Entries()
	must(t, err)
	var out []string
	for _, e := range es {
		out = append(out, e.File)
	}
	return out
}

// KeyPair makes a release key.
func KeyPair(t testing.TB) (ed25519.PrivateKey, ed25519.PublicKey) {
	t.Helper()
	priv, pub, err := release.GenerateKey()
	must(t, err)
	k, err := release.ParsePrivateKey(priv)
	must(t, err)
	p, err := release.ParsePublicKey(pub)
	must(t, err)
	return k, p
}

// Bundle makes the bundle of d's root A as name version, signed by key.
func Bundle(t testing.TB, d Disk, name, version string, key ed25519.PrivateKey) string {
	t.Helper()
	f, err := os.Open(d.Raw)
	must(t, err)
	defer f.Close()
	out := filepath.Join(t.TempDir(), name+"-"+version+".bundle")
	w, err := os.Create(out)
	must(t, err)
	defer w.Close()
	_, err = release.Write(w, release.Info{Name: name, Version: version, Architecture: "amd64"},
		release.Contents{Image: io.NewSectionReader(f, d.RootA.Offset, d.RootA.Size), Size: d.RootA.Size, Kernel: d.Kernel, Initrd: d.Initrd}, key, t.TempDir())
	must(t, err)
	return out
}

// Live lays out, under dir, what upgrade.Live reads on a running system
// booted from root (a PARTUUID) of the disk at raw: the kernel command
// line, /dev/disk/by-partuuid (with a link per root partition) and sysfs.
// It returns the System's Cmdline, DevDir and SysDir.
func Live(t testing.TB, dir, raw string, d Disk, root string) (cmdline, devDir, sysDir string) {
	t.Helper()
	devDir = filepath.Join(dir, "dev/disk/by-partuuid")
	sysDir = filepath.Join(dir, "sys/class/block")
	must(t, os.MkdirAll(devDir, 0o755))
	must(t, os.MkdirAll(sysDir, 0o755))
	if _, err := os.Lstat(filepath.Join(dir, "dev/vda")); err != nil {
		must(t, os.Symlink(raw, filepath.Join(dir, "dev/vda")))
		for i, p := range []upgrade.Partition{d.RootA, d.RootB} {
			n := "vda" + string(rune('2'+i))
			must(t, os.WriteFile(filepath.Join(dir, "dev", n), nil, 0o644))
			must(t, os.Symlink("../../"+n, filepath.Join(devDir, lower(p.GUID))))
			blk := filepath.Join(dir, "sys/devices/virtio2/block/vda", n)
			must(t, os.MkdirAll(blk, 0o755))
			must(t, os.WriteFile(filepath.Join(blk, "partition"), []byte("2\n"), 0o644))
			must(t, os.Symlink(blk, filepath.Join(sysDir, n)))
		}
	}
	cmdline = filepath.Join(dir, "cmdline")
	must(t, os.WriteFile(cmdline, []byte("root=PARTUUID="+lower(root)+" rw console=ttyS0,115200\n"), 0o644))
	return cmdline, devDir, sysDir
}

func lower(s string) string { return string(bytes.ToLower([]byte(s))) }
