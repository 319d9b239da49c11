package imagebuild

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/artifact"
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

// writeBundle writes root A of the job's raw disk as a signed bundle to
// path.
func writeBundle(job *artifact.Job, key []byte, path, scratch string) error {
	off, size, err := RootA(job.RawPath)
	if err != nil {
		return err
	}
	disk, err := os.Open(job.RawPath)
	if err != nil {
		return err
	}
	defer disk.Close()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	info := release.Info{Name: job.Spec.Name, Version: job.Spec.Version, Architecture: Architecture}
	if _, err := release.Write(f, info, io.NewSectionReader(disk, off, size), key, scratch); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
