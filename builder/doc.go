// Package builder turns an appliance's image spec and root filesystem into a
// bootable raw GPT disk, without mounting, loop devices or root privileges.
//
// The spec (Spec, read by LoadSpec from images/connector/image.yaml) names
// the appliance, its virtual hardware, the NIC's static MAC, the OVF
// properties the admin is prompted for, and where the root filesystem comes
// from. It is decoded strictly; every problem is reported at once with the
// file and field path; defaults are filled by SetDefaults, separately.
//
// Build writes the disk in two parts. The GPT and partition 1, a 256 MiB
// FAT32 EFI system partition holding systemd-boot as EFI/BOOT/BOOTX64.EFI,
// the newest kernel and initrd from the root filesystem's /boot and a boot
// entry whose options find the root by PARTUUID and put the console on tty0
// and ttyS0, are written with github.com/diskfs/go-diskfs. Partition 2, ext4
// with the tree, is written by package ext4img in one pass: the tree is
// scanned once (every entry added to the layout), then file data is
// streamed at precomputed offsets and the metadata follows; the kernel,
// initrd and systemd-boot are kept as they stream past, for the ESP. The
// file is sparse: only used space costs bytes.
//
// Builds are reproducible: GUIDs, UUIDs, the FAT volume ID and the ext4 hash
// seed are derived from name, version and epoch, and every timestamp is
// clamped to the epoch. go-diskfs v1.9.4 stamps time.Now and random values
// into FAT32 where its API does not reach; fixFAT32 rewrites those fields
// after the fact.
//
// The root filesystem keeps every file type (device nodes, FIFOs and
// sockets too), hard links (found by device and inode in a directory, by
// link members in a tar) and owners. Extended attributes (file
// capabilities, SELinux labels) are not copied.
//
// Speed (BenchmarkRootfsToOVA in cmd/outpost, a 1 GiB tree of 53k entries
// on a loaded 2-core machine): Build takes about 3.6 s and 75 MiB, mostly
// reading the tree; the whole OVA about 14 s, 5.5x faster than mkfs.ext4
// -d, qemu-img convert, sha256sum and tar (76 s), most of it deflating the
// VMDK.
//
// The package writes only the raw disk. The disk formats are packages under
// disk/ (disk/vmdk, disk/qcow2, disk/raw) and the OVA is package ova;
// package artifact writes an appliance's distribution files from the raw
// disk with them, and package imagebuild is the pipeline behind `outpost
// image build`.
package builder
