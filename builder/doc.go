// Package builder turns an appliance's image spec and root filesystem into a
// bootable raw GPT disk, without mounting, loop devices or root privileges.
//
// The spec (Spec, read by LoadSpec from images/connector/image.yaml) names
// the appliance, its virtual hardware, the NIC's static MAC, the OVF
// properties the admin is prompted for, and where the root filesystem comes
// from. It is decoded strictly; every problem is reported at once with the
// file and field path; defaults are filled by SetDefaults, separately.
//
// Build writes the disk with github.com/diskfs/go-diskfs: partition 1 is a
// 256 MiB FAT32 EFI system partition holding systemd-boot as
// EFI/BOOT/BOOTX64.EFI, the newest kernel and initrd from the root
// filesystem's /boot and a boot entry whose options find the root by
// PARTUUID and put the console on tty0 and ttyS0; partition 2 is ext4 with
// the tree. The file is sparse: only used space costs bytes.
//
// Builds are reproducible: GUIDs, UUIDs, the FAT volume ID and the ext4 hash
// seed are derived from name, version and epoch, and every timestamp is
// clamped to the epoch. go-diskfs v1.9.4 stamps time.Now and random values
// in places its API does not reach; normalizeExt4 and fixFAT32 rewrite
// those fields after the fact (see their comments).
//
// What go-diskfs cannot represent is reported in Result.Skipped: device
// nodes, FIFOs and sockets are left out (udev and systemd create them at
// boot), hard links become copies, symlinks belong to their directory's
// owner. Extended attributes (file capabilities, SELinux labels) are not
// copied.
//
// The package does not write VMDK, qcow2 or OVA; package ova does, from the
// raw disk.
//
// Speed (measured on a 368 MiB, 12k-file tree, 8 GiB disk: about 11 s, 9 s
// CPU): 40% of CPU is go-diskfs resolving paths (getEntryAndParent re-reads
// and re-parses every directory from the backing file on each Mkdir,
// OpenFile, Chown, Chmod and Chtimes), 19% allocateExtents (bitmap FreeList
// scans, a superblock rewrite with all backups per allocation), and a third
// is syscalls from small unbuffered ReadAt/WriteAt. A block cache in the
// backend, or writing the tree in one pass with a layout computed up front,
// is where the speed is.
package builder
