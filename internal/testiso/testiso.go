// Package testiso writes small ISO 9660 images with go-diskfs for tests:
// an OVF environment CD-ROM as vSphere's ISO transport attaches it, or a
// seed ISO.
package testiso

import (
	"os"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
)

// Make writes an ISO 9660 image with volume label label at path, holding
// files (name → content) in its root directory.
func Make(t testing.TB, path, label string, files map[string]string) {
	t.Helper()
	d, err := diskfs.Create(path, 4<<20, diskfs.SectorSizeDefault)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.LogicalBlocksize = 2048
	fsys, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: 0, FSType: filesystem.TypeISO9660, VolumeLabel: label, WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		f, err := fsys.OpenFile("/"+name, os.O_CREATE|os.O_RDWR)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if err := fsys.(*iso9660.FileSystem).Finalize(iso9660.FinalizeOptions{}); err != nil {
		t.Fatal(err)
	}
}
