package appliance

import (
	"crypto/sha256"
	"fmt"
	"strings"
)

// The appliance's disk: a GPT with an EFI system partition, two root
// partitions of the same size for A/B upgrades (the system runs from one,
// the next release is written to the other), and a data partition holding
// everything that must survive an upgrade. Partitions are found by GPT type
// and PARTUUID, never by device name.
const (
	ESPPartition   = 1
	RootAPartition = 2
	RootBPartition = 3
	DataPartition  = 4

	// RootPartitionType is the GPT type of both roots: systemd's
	// discoverable "Linux root (x86-64)".
	RootPartitionType = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
	// DataPartitionType is the GPT type of the data partition: Linux
	// filesystem data.
	DataPartitionType = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"

	RootALabel = "root-a"
	RootBLabel = "root-b"
	DataLabel  = "outpost-data"

	// DataMount is where the data partition is mounted.
	DataMount = "/var/lib/outpost"
	// JournalDir, on the data partition, is bind-mounted on
	// /var/log/journal so the journal survives upgrades.
	JournalDir = DataMount + "/journal"
)

// Identity files, on the data partition: an upgrade that replaces the root
// keeps the connector's name and certificate.
const (
	CertFile = DataMount + "/tls/connector.crt"
	KeyFile  = DataMount + "/tls/connector.key"
)

// StablePartUUID returns the PARTUUID of a partition that every release of
// the appliance called name shares (root B and data): a root written by an
// upgrade finds the data partition through its /etc/fstab without knowing
// which release made the disk.
func StablePartUUID(name, purpose string) string {
	sum := sha256.Sum256([]byte("outpost-partition\x00" + name + "\x00" + purpose))
	sum[6] = sum[6]&0x0f | 0x40
	sum[8] = sum[8]&0x3f | 0x80
	return strings.ToUpper(fmt.Sprintf("%x-%x-%x-%x-%x", sum[0:4], sum[4:6], sum[6:8], sum[8:10], sum[10:16]))
}

// Fstab is the appliance's /etc/fstab: the data partition and the EFI
// system partition, both by a PARTUUID every release shares, and the
// journal's directory on data.
//
// The ESP is mounted on ESPMount by an automount, without nofail: the
// upgrade (the agent) writes kernels and loader entries there, and with
// nofail a missing ESP would leave an empty /boot/efi that the agent
// writes into, on the root, unnoticed. With the automount the boot never
// waits for it, and a missing ESP is an error for whoever opens
// /boot/efi. umask=0077: the ESP holds nothing others need to read.
func Fstab(dataPartUUID, espPartUUID string) string {
	return fmt.Sprintf(`# outpost appliance: written by the builder.
PARTUUID=%s %s ext4 defaults,noatime,x-systemd.device-timeout=30s 0 2
PARTUUID=%s %s vfat %s 0 2
%s /var/log/journal none bind,x-systemd.requires-mounts-for=%s 0 0
`, strings.ToLower(dataPartUUID), DataMount, strings.ToLower(espPartUUID), ESPMount, ESPMountOptions, JournalDir, DataMount)
}

// ESPMountOptions are the ESP's mount options in Fstab.
const ESPMountOptions = "umask=0077,noatime,noauto,x-systemd.automount,x-systemd.device-timeout=30s"
