package upgrade

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// carryInto mounts the new root's ext4 at dir, copies this machine's files
// from root into it (CarryOver) and unmounts it.
func carryInto(dev, root, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	defer os.Remove(dir)
	if err := unix.Mount(dev, dir, "ext4", unix.MS_NOATIME|unix.MS_NODEV|unix.MS_NOSUID, ""); err != nil {
		return fmt.Errorf("mount the new root %s: %w", dev, err)
	}
	err := CarryOver(root, dir)
	if uerr := unix.Unmount(dir, 0); uerr != nil && err == nil {
		err = fmt.Errorf("unmount the new root: %w", uerr)
	}
	return err
}
