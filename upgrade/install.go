package upgrade

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/release"
)

// Installer writes release bundles to the inactive root of a disk.
type Installer struct {
	Disk    string // the disk (block device or image file)
	Running string // PARTUUID of the running root
	ESP     ESP
	Trusted []ed25519.PublicKey
	// Name, Architecture and Version are the running appliance's: a
	// bundle for another appliance or architecture is refused, and one
	// older than Version unless AllowDowngrade.
	Name, Architecture, Version string
	AllowDowngrade              bool
	// Device returns where slot s is written: a file and the slot's
	// offset in it. nil: Disk at the partition's offset. On the appliance
	// it is the partition's own device, so that Carry, which mounts that
	// device, reads what was written rather than a stale cache.
	Device func(s Slot) (path string, offset int64)
	// Carry, when set, is called once the new root is written and synced
	// and before its boot entry is: it copies this machine's files into
	// it (CarryOver). A failure fails the installation.
	Carry func(s Slot) error
}

var errNoKeys = fmt.Errorf("this appliance trusts no release key (no *.pub in %s): it was built without --release-key, so it cannot verify bundles; deploy the new release's image instead", appliance.ReleaseKeysDir)

// Installed is what Install wrote.
type Installed struct {
	Manifest release.Manifest
	Slot     string // the slot written, appliance.SlotA or SlotB
	Entry    string // the loader entry's file name, with its single try
}

// Install checks the bundle at path completely (signature, appliance,
// architecture, version, size, every hash) before it writes anything;
// then it writes the root image to the inactive slot, the kernel and
// initrd to the ESP, and last a loader entry with one try, which
// systemd-boot boots next. A failure before that entry leaves the running
// system's boot as it was.
func (in Installer) Install(ctx context.Context, path string) (Installed, error) {
	if len(in.Trusted) == 0 {
		return Installed{}, errNoKeys
	}
	disk, err := OpenDisk(in.Disk)
	if err != nil {
		return Installed{}, err
	}
	cur, next, err := disk.Slots(in.Running)
	if err != nil {
		return Installed{}, err
	}
	entries, err := in.ESP.Entries()
	if err != nil {
		return Installed{}, err
	}
	curEntry, ok := in.ESP.entryOf(entries, cur)
	if !ok {
		return Installed{}, fmt.Errorf("no boot entry on the EFI system partition boots the running root %s; cannot add one for the other root", cur.GUID)
	}
	policy := release.Policy{Name: in.Name, Architecture: in.Architecture, Running: in.Version, AllowDowngrade: in.AllowDowngrade, MaxSize: next.Size}

	f, err := os.Open(path)
	if err != nil {
		return Installed{}, err
	}
	defer f.Close()
	m, err := release.Verify(f, in.Trusted, policy)
	if err != nil {
		return Installed{}, fmt.Errorf("bundle refused, nothing written: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return Installed{}, err
	}

	// From here the inactive slot is overwritten: first make sure no
	// entry boots it.
	if err := in.ESP.clear(entries, next); err != nil {
		return Installed{}, err
	}
	path, base := in.Disk, next.Offset
	if in.Device != nil {
		path, base = in.Device(next)
	}
	d, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return Installed{}, fmt.Errorf("open root %s for writing: %w", next.Name, err)
	}
	defer d.Close()
	if err := zeroRange(d, base, next.Size); err != nil {
		return Installed{}, fmt.Errorf("clear root %s: %w", next.Name, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Installed{}, err
	}
	t := &target{ctx: ctx, disk: d, base: base, slot: next, esp: in.ESP}
	if _, err := release.Read(f, in.Trusted, policy, t); err != nil {
		t.discard()
		return Installed{}, fmt.Errorf("writing root %s: %w (the running system is untouched)", next.Name, err)
	}
	if err := d.Sync(); err != nil {
		t.discard()
		return Installed{}, fmt.Errorf("writing root %s: %w", next.Name, err)
	}
	if in.Carry != nil {
		if err := in.Carry(next); err != nil {
			t.discard()
			return Installed{}, err
		}
	}
	if err := t.commit(); err != nil {
		return Installed{}, err
	}
	gen := 1
	for _, be := range entries {
		gen = max(gen, be.Gen+1)
	}
	name := appliance.EntryFile(gen, next.Name, 1)
	text := entryText(m.Name+" "+m.Version, m.Version, withRoot(curEntry.Options, next.GUID), t.initrd, next)
	if err := in.ESP.writeFile(appliance.EntriesDir+"/"+name, []byte(text)); err != nil {
		return Installed{}, fmt.Errorf("write the boot entry: %w", err)
	}
	if err := syncDir(in.ESP.path(appliance.EntriesDir)); err != nil {
		return Installed{}, err
	}
	return Installed{Manifest: m, Slot: next.Name, Entry: name}, nil
}

// target receives a verified bundle: the image into the slot, the boot
// files under temporary names on the ESP until commit.
type target struct {
	ctx    context.Context
	disk   *os.File
	base   int64 // the slot's offset in disk
	slot   Slot
	esp    ESP
	staged []string // ESP paths written with the ".new" suffix
	initrd bool
}

func (t *target) WriteImageAt(p []byte, off int64) error {
	if err := t.ctx.Err(); err != nil {
		return err
	}
	if off < 0 || off+int64(len(p)) > t.slot.Size {
		return fmt.Errorf("image extent at %d (%d bytes) is outside root %s (%d bytes)", off, len(p), t.slot.Name, t.slot.Size)
	}
	_, err := t.disk.WriteAt(p, t.base+off)
	return err
}

func (t *target) BootFile(name string, r io.Reader) error {
	var dst string
	switch name {
	case release.KernelName:
		dst = appliance.SlotKernel(t.slot.Name)
	case release.InitrdName:
		dst = appliance.SlotInitrd(t.slot.Name)
		t.initrd = true
	default:
		return fmt.Errorf("unknown boot file %q in the bundle", name)
	}
	tmp, err := t.esp.stage(dst, r)
	if err != nil {
		return err
	}
	t.staged = append(t.staged, tmp)
	return nil
}

func (t *target) discard() {
	for _, p := range t.staged {
		os.Remove(p)
	}
}

func (t *target) commit() error {
	for _, p := range t.staged {
		if err := os.Rename(p, strings.TrimSuffix(p, ".new")); err != nil {
			t.discard()
			return fmt.Errorf("install %s: %w", p, err)
		}
	}
	return nil
}

// LoadTrusted reads the release public keys in dir (*.pub).
func LoadTrusted(dir string) ([]ed25519.PublicKey, error) {
	paths, _ := filepath.Glob(filepath.Join(dir, "*.pub"))
	var keys []ed25519.PublicKey
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		k, err := release.ParsePublicKey(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}
