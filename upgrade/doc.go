// Package upgrade installs a release on a running appliance, the A/B way
// (as RAUC, Mender and systemd-sysupdate do): it writes a verified bundle
// (package release) to the root partition the system is not running from,
// adds a systemd-boot entry for it with a single try (Automatic Boot
// Assessment), and on the next system blesses that entry once the agent
// says the system is healthy. An entry that was tried and not blessed is
// skipped by systemd-boot, so the machine falls back to the previous root
// by itself; Fallback finds that out and says which version failed and
// why.
//
// The disk is read through its GPT (partitions by type and PARTUUID, never
// by device name) and written at the inactive partition's offset, so tests
// run against a disk image file built by package builder; the ESP is a
// directory (its mount point on the appliance).
package upgrade
