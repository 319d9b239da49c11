package imagebuild

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	pathpkg "path"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/artifact"
	"github.com/outpost-appliance/outpost/builder"
	"github.com/outpost-appliance/outpost/internal/atomicfile"
	"github.com/outpost-appliance/outpost/release"
)

// BundleExt names the release bundle NAME-VERSION.bundle.
const BundleExt = ".bundle"

// Architecture is what the builder makes: the roots have the GPT type of
// an x86-64 root (appliance.RootPartitionType).
const Architecture = "amd64"

// ErrNoRootA is returned for a disk without the appliance's root A.
var ErrNoRootA = errors.New("no appliance root A partition")

// RootA returns the extent of root A (partition appliance.RootAPartition,
// of type appliance.RootPartitionType) in the raw GPT disk at path, in
// bytes.
func RootA(path string) (offset, size int64, err error) {
	d, err := diskfs.Open(path, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		return 0, 0, fmt.Errorf("disk %s: %w", path, err)
	}
	defer d.Close()
	pt, err := d.GetPartitionTable()
	if err != nil {
		return 0, 0, fmt.Errorf("disk %s: partition table: %w", path, err)
	}
	tbl, ok := pt.(*gpt.Table)
	if !ok {
		return 0, 0, fmt.Errorf("disk %s: %w: not a GPT disk", path, ErrNoRootA)
	}
	for _, p := range tbl.Partitions {
		if p.Index == appliance.RootAPartition && p.End > p.Start {
			if !strings.EqualFold(string(p.Type), appliance.RootPartitionType) {
				return 0, 0, fmt.Errorf("disk %s: %w: partition %d has type %s, want %s; give a disk made by 'outpost image build'", path, ErrNoRootA, p.Index, p.Type, appliance.RootPartitionType)
			}
			return p.GetStart(), p.GetSize(), nil
		}
	}
	return 0, 0, fmt.Errorf("disk %s: %w: partition %d is missing; give a disk made by 'outpost image build'", path, ErrNoRootA, appliance.RootAPartition)
}

// BootFiles returns slot a's kernel and initrd (nil when there is none)
// from the ESP of the raw GPT disk at path, where the builder put them
// (appliance.SlotKernel, appliance.SlotInitrd): the bytes that boot root
// A, read through go-diskfs's FAT32 reader.
func BootFiles(path string) (kernel, initrd []byte, err error) {
	d, err := diskfs.Open(path, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		return nil, nil, fmt.Errorf("disk %s: %w", path, err)
	}
	defer d.Close()
	esp, err := d.GetFilesystem(appliance.ESPPartition)
	if err != nil {
		return nil, nil, fmt.Errorf("disk %s: %w: the EFI system partition: %v; give a disk made by 'outpost image build'", path, ErrNoBootFiles, err)
	}
	dir := pathpkg.Dir(appliance.SlotKernel(appliance.SlotA))
	entries, err := esp.ReadDir(strings.TrimPrefix(dir, "/")) // an fs.FS path
	if err != nil {
		return nil, nil, fmt.Errorf("disk %s: %w: EFI system partition: %s: %v; give a disk made by this outpost's 'outpost image build'", path, ErrNoBootFiles, dir, err)
	}
	has := map[string]bool{}
	for _, e := range entries {
		has[dir+"/"+e.Name()] = true
	}
	if !has[appliance.SlotKernel(appliance.SlotA)] {
		return nil, nil, fmt.Errorf("disk %s: %w: no %s on the EFI system partition; give a disk made by this outpost's 'outpost image build'", path, ErrNoBootFiles, appliance.SlotKernel(appliance.SlotA))
	}
	if kernel, err = esp.ReadFile(appliance.SlotKernel(appliance.SlotA)); err != nil {
		return nil, nil, fmt.Errorf("disk %s: EFI system partition: %s: %w", path, appliance.SlotKernel(appliance.SlotA), err)
	}
	if has[appliance.SlotInitrd(appliance.SlotA)] {
		if initrd, err = esp.ReadFile(appliance.SlotInitrd(appliance.SlotA)); err != nil {
			return nil, nil, fmt.Errorf("disk %s: EFI system partition: %s: %w", path, appliance.SlotInitrd(appliance.SlotA), err)
		}
	}
	return kernel, initrd, nil
}

// ErrNoBootFiles is returned for a disk whose ESP lacks slot a's kernel.
var ErrNoBootFiles = errors.New("no appliance kernel on the disk")

// writeBundle writes root A of the job's raw disk, with the kernel and
// initrd that boot it, as a signed bundle to path.
func writeBundle(job *artifact.Job, key []byte, path, scratch string) error {
	off, size, err := RootA(job.RawPath)
	if err != nil {
		return err
	}
	kernel, initrd, err := BootFiles(job.RawPath)
	if err != nil {
		return err
	}
	disk, err := os.Open(job.RawPath)
	if err != nil {
		return err
	}
	defer disk.Close()
	info := release.Info{Name: job.Spec.Name, Version: job.Spec.Version, Architecture: Architecture}
	c := release.Contents{Image: io.NewSectionReader(disk, off, size), Size: size, Kernel: kernel, Initrd: initrd}
	return atomicfile.Write(path, 0o644, atomicfile.Options{}, func(w io.Writer) error {
		_, err := release.Write(w, info, c, key, scratch)
		return err
	})
}

// releaseKeyFile is where the image's root carries the public half of
// Request.ReleaseKey, so that the appliance verifies later bundles.
const releaseKeyFile = appliance.ReleaseKeysDir + "/release.pub"

// releaseKeyFiles returns the root filesystem's file holding key's public
// half, none without a key.
func releaseKeyFiles(key ed25519.PrivateKey) ([]builder.File, error) {
	if key == nil {
		return nil, nil
	}
	pub, err := release.MarshalPublicKey(key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("release key: %w", err)
	}
	return []builder.File{{Path: releaseKeyFile, Mode: 0o644, Data: pub}}, nil
}
