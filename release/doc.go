// Package release writes and verifies update bundles: the bytes of an
// appliance's root partition, compressed with zstd, described by a manifest
// (appliance name, version, architecture, sizes, SHA-256 of the image and of
// the compressed payload) that is signed with an Ed25519 release key.
//
// A bundle is a tar archive with exactly three members, in this order:
//
//	manifest.json  the Manifest, as signed
//	manifest.sig   the 64-byte Ed25519 signature of manifest.json's bytes
//	root.img.zst   the payload: the root partition image, zstd-compressed
//
// The signature covers the manifest and the manifest covers the payload's
// hash, so Verify checks the signature first, then the manifest against
// the Policy (name, architecture, downgrade, disk size), then the hashes,
// reading the bundle once and writing nothing. Refusals are sentinel errors
// (ErrSignature, ErrHash, …) for callers to branch on.
//
// The package does not read disks (imagebuild finds root A in the raw disk)
// nor write partitions (the agent does); it imports only the standard
// library, zstd and package appliance so that it can ship in the appliance.
package release
