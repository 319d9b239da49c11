// Package release writes and reads update bundles: an appliance's root
// partition image with the kernel and initrd it boots with, described by a
// manifest (appliance name, version, architecture, sizes and SHA-256 of
// every member) that is signed with an Ed25519 release key.
//
// A bundle is a tar archive with these members, in this order:
//
//	manifest.json  the Manifest, as signed
//	manifest.sig   the 64-byte Ed25519 signature of manifest.json's bytes
//	vmlinuz        the kernel
//	initrd.img     the initrd (absent when the release has none)
//	root.img.zst   the payload: the root image's sparse stream, zstd-compressed
//
// The sparse stream is a sequence of records, each an offset and a length
// (uint64, big-endian) followed by that many bytes of the image, for the
// image's non-zero extents (found in 4 KiB blocks, adjacent blocks merged;
// offsets increasing, extents not overlapping, everything a multiple of
// 512 bytes), ended by a record of length 0 whose offset is the image's
// full size. What no extent covers is zeros. A 3.5 GiB root holding 400 MB
// costs the appliance 400 MB of decompressing and hashing, not 3.5 GiB.
//
// The signature covers the manifest and the manifest covers every member's
// hash, so Read checks the signature first, then the manifest against the
// Policy (name, architecture, downgrade, root partition size), then each
// member as it streams by, reading the bundle once; with a Target it also
// hands the boot files and the image's extents over as they are read.
// Refusals are sentinel errors (ErrSignature, ErrHash, …) for callers to
// branch on.
//
// The package does not read disks (imagebuild finds root A in the raw disk)
// nor write partitions or the ESP (the agent's Target does); it imports
// only the standard library, zstd and package appliance so that it can ship
// in the appliance.
package release
