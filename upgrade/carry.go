package upgrade

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/outpost-appliance/outpost/internal/atomicfile"
)

// MachineFiles are the files that make a root this machine rather than a
// fresh copy of the release: what first boot wrote (network, DNS, time,
// host name, administrator access) and what the system made at its first
// boot (machine ID, which systemd-networkd's DHCP client identifier derives
// from, and SSH host keys). An upgrade copies them into the new root, so it
// comes up with the same addresses, names and keys; first boot, already
// done, does not run its stages again. Globs are allowed.
var MachineFiles = []string{
	"/etc/machine-id",
	"/etc/hostname",
	"/etc/resolv.conf",
	"/etc/chrony/chrony.conf",
	"/etc/systemd/network/10-outpost.network",
	"/etc/systemd/network/20-outpost-fallback.network",
	"/root/.ssh/authorized_keys",
	"/etc/ssh/ssh_host_*",
	"/etc/systemd/system/multi-user.target.wants/ssh.service",
	"/etc/systemd/system/sshd.service",
}

// ShadowFile's root entry is carried too (the password hash given at
// import); the rest of the new release's file is kept.
const ShadowFile = "/etc/shadow"

// CarryOver copies MachineFiles (regular files and symlinks) from the
// running root from into the new root to, with their modes, and root's
// entry of ShadowFile.
func CarryOver(from, to string) error {
	for _, pattern := range MachineFiles {
		matches, err := filepath.Glob(filepath.Join(from, pattern))
		if err != nil {
			return err
		}
		for _, src := range matches {
			rel, _ := filepath.Rel(from, src)
			if err := copyEntry(src, filepath.Join(to, rel)); err != nil {
				return fmt.Errorf("carry /%s into the new root: %w", rel, err)
			}
		}
	}
	if err := carryRootPassword(filepath.Join(from, ShadowFile), filepath.Join(to, ShadowFile)); err != nil {
		return fmt.Errorf("carry root's password into the new root: %w", err)
	}
	return nil
}

func copyEntry(src, dst string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		os.Remove(dst)
		return os.Symlink(target, dst)
	case fi.Mode().IsRegular():
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		return atomicfile.WriteFile(dst, b, fi.Mode().Perm())
	}
	return nil // directories and others are not machine files
}

// carryRootPassword replaces root's line of the new shadow file with the
// running one's.
func carryRootPassword(from, to string) error {
	old, err := os.ReadFile(from)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var rootLine []byte
	for _, l := range bytes.Split(old, []byte("\n")) {
		if bytes.HasPrefix(l, []byte("root:")) {
			rootLine = l
		}
	}
	cur, err := os.ReadFile(to)
	if err != nil || rootLine == nil {
		return nil // no shadow in the new root, or no root entry to carry
	}
	lines := strings.Split(string(cur), "\n")
	found := false
	for i, l := range lines {
		if strings.HasPrefix(l, "root:") {
			lines[i], found = string(rootLine), true
		}
	}
	if !found {
		lines = append([]string{string(rootLine)}, lines...)
	}
	fi, err := os.Stat(to)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(to, []byte(strings.Join(lines, "\n")), fi.Mode().Perm())
}
