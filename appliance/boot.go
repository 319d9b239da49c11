package appliance

import (
	"fmt"
	"regexp"
	"strconv"
)

// Boot and upgrades. The ESP holds systemd-boot, one loader entry per root
// slot and each slot's kernel and initrd. loader.conf's default is the
// glob LoaderDefault, so systemd-boot boots the first entry in its sort
// order: entry files are named outpost-GEN-SLOT.conf and sort by GEN,
// newest first, and an entry whose tries are used up ("+0-N", Automatic
// Boot Assessment) sorts last. An upgrade writes the inactive slot and an
// entry with one try (outpost-GEN-SLOT+1-0.conf); the agent on the new
// system blesses it (renames it to outpost-GEN-SLOT.conf) once it is
// healthy. Otherwise the next boot falls back to the previous entry.
const (
	// ESPMount is where the appliance mounts its EFI system partition
	// (fstab, by the release-independent PARTUUID).
	ESPMount = "/boot/efi"
	// LoaderDefault is loader.conf's default entry pattern.
	LoaderDefault = "outpost-*"
	// EntriesDir is the loader entries' directory on the ESP.
	EntriesDir = "/loader/entries"
	// SlotA and SlotB name the root partitions RootAPartition and
	// RootBPartition in entry and file names.
	SlotA = "a"
	SlotB = "b"
)

// SlotOf returns the slot name of a root partition number ("" for others).
func SlotOf(partition int) string {
	switch partition {
	case RootAPartition:
		return SlotA
	case RootBPartition:
		return SlotB
	}
	return ""
}

// SlotKernel and SlotInitrd are where a slot's kernel and initrd live on
// the ESP.
func SlotKernel(slot string) string { return "/outpost/" + slot + "/vmlinuz" }
func SlotInitrd(slot string) string { return "/outpost/" + slot + "/initrd.img" }

// EntryFile names a loader entry file: generation gen (higher boots
// first), slot, and triesLeft tries (-1: no boot counting, a blessed or
// built-in entry).
func EntryFile(gen int, slot string, triesLeft int) string {
	if triesLeft < 0 {
		return fmt.Sprintf("outpost-%06d-%s.conf", gen, slot)
	}
	return fmt.Sprintf("outpost-%06d-%s+%d-0.conf", gen, slot, triesLeft)
}

var entryRe = regexp.MustCompile(`^outpost-([0-9]{6})-([ab])(?:\+([0-9]+)(?:-([0-9]+))?)?\.conf$`)

// Entry is a parsed loader entry file name.
type Entry struct {
	File      string
	Gen       int
	Slot      string
	Counting  bool // has a boot counter: not blessed yet
	TriesLeft int
	TriesDone int
}

// ParseEntryFile parses a name EntryFile made (after systemd-boot may have
// counted tries in it); ok is false for other files.
func ParseEntryFile(name string) (e Entry, ok bool) {
	m := entryRe.FindStringSubmatch(name)
	if m == nil {
		return Entry{}, false
	}
	e = Entry{File: name, Slot: m[2]}
	e.Gen, _ = strconv.Atoi(m[1])
	if m[3] != "" {
		e.Counting = true
		e.TriesLeft, _ = strconv.Atoi(m[3])
		if m[4] != "" {
			e.TriesDone, _ = strconv.Atoi(m[4])
		}
	}
	return e, true
}

// Blessed returns the entry's file name without a boot counter.
func (e Entry) Blessed() string { return EntryFile(e.Gen, e.Slot, -1) }

// Files the upgrade uses on the appliance.
const (
	// ReleaseKeysDir holds the public keys (PEM, *.pub) of the release
	// keys whose bundles this appliance installs; the builder writes the
	// public half of --release-key there.
	ReleaseKeysDir = "/etc/outpost/release-keys"
	// UpgradeDir, on the data partition, holds a bundle being downloaded
	// and the upgrade's state, so that both systems see it.
	UpgradeDir = DataMount + "/upgrade"
	// TrialFailureFile is written on a trial boot that was not blessed in
	// time, just before it reboots into the previous system: what the
	// agent then reports as the reason.
	TrialFailureFile = UpgradeDir + "/trial-failure"
	// BlessedFile exists once the agent blessed this boot.
	BlessedFile = "/run/outpost/boot-blessed"
	// LoaderBootCountPathVar is the EFI variable systemd-boot sets when
	// it boots an entry with a boot counter (efivarfs name).
	LoaderBootCountPathVar = "/sys/firmware/efi/efivars/LoaderBootCountPath-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"
)
