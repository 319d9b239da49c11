package upgrade

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/outpost-appliance/outpost/appliance"
)

// Disk is the appliance's disk (a block device, or an image file in
// tests) and its partitions.
type Disk struct {
	Path  string
	Parts []Partition
}

// OpenDisk reads the GPT of the disk at path.
func OpenDisk(path string) (Disk, error) {
	f, err := os.Open(path)
	if err != nil {
		return Disk{}, fmt.Errorf("open the disk: %w", err)
	}
	defer f.Close()
	parts, err := ReadGPT(f)
	if err != nil {
		return Disk{}, fmt.Errorf("disk %s: %w", path, err)
	}
	return Disk{Path: path, Parts: parts}, nil
}

// Slot is one of the two root partitions.
type Slot struct {
	Name string // appliance.SlotA or appliance.SlotB
	Partition
}

// Slots returns the root partition whose PARTUUID is running and the other
// one, the slot an upgrade writes. Both must have the root partition type.
func (d Disk) Slots(running string) (cur, next Slot, err error) {
	var roots []Slot
	for _, p := range d.Parts {
		if name := appliance.SlotOf(p.Number); name != "" && strings.EqualFold(p.Type, appliance.RootPartitionType) {
			roots = append(roots, Slot{Name: name, Partition: p})
		}
	}
	if len(roots) != 2 {
		return Slot{}, Slot{}, fmt.Errorf("disk %s has %d root partitions of type %s at partitions %d and %d, want 2: it was not made by outpost image build with A/B roots, so it cannot be upgraded in place; deploy the new release's image instead",
			d.Path, len(roots), appliance.RootPartitionType, appliance.RootAPartition, appliance.RootBPartition)
	}
	for i, s := range roots {
		if strings.EqualFold(s.GUID, running) {
			return s, roots[1-i], nil
		}
	}
	return Slot{}, Slot{}, fmt.Errorf("the running root PARTUUID %s is neither root partition of %s (%s, %s)", running, d.Path, roots[0].GUID, roots[1].GUID)
}

// Live finds the running system's disk and its root PARTUUID: root= on
// the kernel command line (the file cmdline, /proc/cmdline), that
// partition's device link in devDir (/dev/disk/by-partuuid) and its disk
// in sysDir (/sys/class/block).
func Live(cmdline, devDir, sysDir string) (disk, root string, err error) {
	b, err := os.ReadFile(cmdline)
	if err != nil {
		return "", "", fmt.Errorf("read the kernel command line: %w", err)
	}
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, "root=PARTUUID="); ok {
			root = strings.ToUpper(v)
		}
	}
	if root == "" {
		return "", "", fmt.Errorf("the kernel command line (%s) has no root=PARTUUID=: this system was not booted from an outpost boot entry", cmdline)
	}
	dev, err := filepath.EvalSymlinks(filepath.Join(devDir, strings.ToLower(root)))
	if err != nil {
		return "", "", fmt.Errorf("find the root partition %s: %w", root, err)
	}
	link, err := filepath.EvalSymlinks(filepath.Join(sysDir, filepath.Base(dev)))
	if err != nil {
		return "", "", fmt.Errorf("find the disk of %s: %w", dev, err)
	}
	if _, err := os.Stat(filepath.Join(link, "partition")); err != nil {
		return "", "", fmt.Errorf("%s is not a partition", dev)
	}
	return filepath.Join(filepath.Dir(dev), filepath.Base(filepath.Dir(link))), root, nil
}
