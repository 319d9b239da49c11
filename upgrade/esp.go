package upgrade

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/outpost-appliance/outpost/appliance"
)

// ESP is the EFI system partition, mounted at Dir.
type ESP struct{ Dir string }

// BootEntry is an outpost loader entry on the ESP.
type BootEntry struct {
	appliance.Entry
	Title, Version, Linux, Initrd, Options string
	Root                                   string // the PARTUUID root= names, upper case
}

func (e ESP) path(name string) string { return filepath.Join(e.Dir, filepath.FromSlash(name)) }

// Entries lists the outpost entries, newest generation first.
func (e ESP) Entries() ([]BootEntry, error) {
	dir := e.path(appliance.EntriesDir)
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read the boot entries: %w (is the EFI system partition mounted on %s?)", err, e.Dir)
	}
	var out []BootEntry
	for _, de := range des {
		ent, ok := appliance.ParseEntryFile(strings.ToLower(de.Name()))
		if !ok {
			continue
		}
		ent.File = de.Name()
		b, err := os.ReadFile(filepath.Join(dir, de.Name()))
		if err != nil {
			return nil, fmt.Errorf("read boot entry %s: %w", de.Name(), err)
		}
		out = append(out, parseEntry(ent, b))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Gen > out[j].Gen })
	return out, nil
}

func parseEntry(ent appliance.Entry, b []byte) BootEntry {
	be := BootEntry{Entry: ent}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		v = strings.TrimSpace(v)
		switch k {
		case "title":
			be.Title = v
		case "version":
			be.Version = v
		case "linux":
			be.Linux = v
		case "initrd":
			be.Initrd = v
		case "options":
			be.Options = v
			for _, f := range strings.Fields(v) {
				if u, ok := strings.CutPrefix(f, "root=PARTUUID="); ok {
					be.Root = strings.ToUpper(u)
				}
			}
		}
	}
	return be
}

func (e ESP) entryOf(entries []BootEntry, s Slot) (BootEntry, bool) {
	for _, be := range entries {
		if be.Root == strings.ToUpper(s.GUID) {
			return be, true
		}
	}
	return BootEntry{}, false
}

// clear removes every entry that boots slot s, and the kernel and initrd
// they name unless another entry uses them: s is about to be overwritten.
func (e ESP) clear(entries []BootEntry, s Slot) error {
	keep := map[string]bool{}
	var drop []BootEntry
	for _, be := range entries {
		if be.Root == strings.ToUpper(s.GUID) || be.Slot == s.Name {
			drop = append(drop, be)
			continue
		}
		keep[be.Linux], keep[be.Initrd] = true, true
	}
	for _, be := range drop {
		if err := os.Remove(e.path(appliance.EntriesDir + "/" + be.File)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove boot entry %s: %w", be.File, err)
		}
		for _, f := range []string{be.Linux, be.Initrd} {
			if f != "" && !keep[f] {
				if err := os.Remove(e.path(f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("remove %s from the EFI system partition: %w", f, err)
				}
			}
		}
	}
	return nil
}

// entryText is a loader entry for slot s.
func entryText(title, version, options string, hasInitrd bool, s Slot) string {
	t := fmt.Sprintf("title %s\nversion %s\nlinux %s\n", title, version, appliance.SlotKernel(s.Name))
	if hasInitrd {
		t += "initrd " + appliance.SlotInitrd(s.Name) + "\n"
	}
	return t + "options " + options + "\n"
}

// withRoot returns kernel options with root= naming partuuid and, so that
// a kernel panic on a trial boot reboots into the fallback rather than
// hanging, panic= set.
func withRoot(options, partuuid string) string {
	var out []string
	hasPanic := false
	for _, f := range strings.Fields(options) {
		if strings.HasPrefix(f, "root=") {
			continue
		}
		hasPanic = hasPanic || strings.HasPrefix(f, "panic=")
		out = append(out, f)
	}
	out = append([]string{"root=PARTUUID=" + strings.ToLower(partuuid)}, out...)
	if !hasPanic {
		out = append(out, "panic=10")
	}
	return strings.Join(out, " ")
}

// stage writes r to name+".new" on the ESP, synced, and returns that
// path; the caller renames it into place (or removes it). Not atomicfile:
// FAT refuses a chmod that its mount options cannot represent, and modes
// mean nothing there.
func (e ESP) stage(name string, r io.Reader) (string, error) {
	tmp := e.path(name) + ".new"
	if err := os.MkdirAll(filepath.Dir(tmp), 0o700); err != nil {
		return "", err
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", fmt.Errorf("write %s to the EFI system partition: %w", name, err)
	}
	_, err = io.Copy(f, r)
	if errors.Is(err, syscall.ENOSPC) {
		err = fmt.Errorf("the EFI system partition has no room for %s: %w", name, err)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	return tmp, nil
}

// writeFile writes name on the ESP durably: staged, then renamed.
func (e ESP) writeFile(name string, data []byte) error {
	tmp, err := e.stage(name, bytes.NewReader(data))
	if err != nil {
		return err
	}
	return os.Rename(tmp, e.path(name))
}

// Bless marks the entry of the running slot good: its boot counter is
// dropped, so systemd-boot keeps booting it. It reports whether there was
// a counter to drop (a trial boot).
func (e ESP) Bless(running Slot) (bool, error) {
	entries, err := e.Entries()
	if err != nil {
		return false, err
	}
	be, ok := e.entryOf(entries, running)
	if !ok {
		return false, fmt.Errorf("no boot entry on the EFI system partition boots the running root %s", running.GUID)
	}
	if !be.Counting {
		return false, nil
	}
	dir := e.path(appliance.EntriesDir)
	if err := os.Rename(filepath.Join(dir, be.File), filepath.Join(dir, be.Blessed())); err != nil {
		return false, fmt.Errorf("bless boot entry %s: %w", be.File, err)
	}
	if err := syncDir(dir); err != nil {
		return false, err
	}
	return true, nil
}

// Trial is an entry for the other slot that systemd-boot tried and that
// was never blessed: the upgrade to its version failed, and the machine
// is back on the running slot.
type Trial struct {
	Version string
	Entry   string
}

// FailedTrial finds such an entry (tries used up, not blessed) for a slot
// other than running, and removes it (and its boot files) so it is
// reported once.
func (e ESP) FailedTrial(running Slot) (*Trial, error) {
	entries, err := e.Entries()
	if err != nil {
		return nil, err
	}
	for _, be := range entries {
		if be.Root == strings.ToUpper(running.GUID) || !be.Counting || be.TriesLeft > 0 {
			continue
		}
		t := &Trial{Version: be.Version, Entry: be.File}
		other := Slot{Name: be.Slot, Partition: Partition{GUID: be.Root}}
		if err := e.clear(entries, other); err != nil {
			return t, err
		}
		return t, syncDir(e.path(appliance.EntriesDir))
	}
	return nil, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
