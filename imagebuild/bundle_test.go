package imagebuild

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/disk/disktest"
	"github.com/outpost-appliance/outpost/release"
)

// applianceDisk is a small raw disk with the appliance's four partitions;
// root A holds text and random data.
func applianceDisk(t *testing.T) (path string, rootOff, rootSize int64) {
	t.Helper()
	const mib = 2048 // sectors
	p := disktest.MakeRaw(t, disktest.Spec{Name: "d", Size: 8 << 20, Seed: 5, Regions: []disktest.Region{
		{Off: 2 << 20, Len: 100 << 10, Kind: disktest.Text}, {Off: 3<<20 + 4096, Len: 300 << 10, Kind: disktest.Random},
	}})
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	root := gpt.Type(appliance.RootPartitionType)
	tbl := &gpt.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true, Partitions: []*gpt.Partition{
		{Index: 1, Start: mib, End: 2*mib - 1, Type: gpt.EFISystemPartition, Name: "esp"},
		{Index: 2, Start: 2 * mib, End: 4*mib - 1, Type: root, Name: appliance.RootALabel},
		{Index: 3, Start: 4 * mib, End: 6*mib - 1, Type: root, Name: appliance.RootBLabel},
		{Index: 4, Start: 6 * mib, End: 8*mib - 34, Type: gpt.LinuxFilesystem, Name: appliance.DataLabel},
	}}
	if err := tbl.Write(f, 8<<20); err != nil {
		t.Fatal(err)
	}
	return p, 2 << 20, 2 << 20
}

func releaseKey(t *testing.T) (ed25519.PrivateKey, ed25519.PublicKey) {
	t.Helper()
	priv, pub, err := release.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	k, _ := release.ParsePrivateKey(priv)
	p, _ := release.ParsePublicKey(pub)
	return k, p
}

// TestReleaseBundle: with a release key, pack also publishes
// NAME-VERSION.bundle holding exactly root A, signed, for the spec's name,
// version and amd64.
func TestReleaseBundle(t *testing.T) {
	key, pub := releaseKey(t)
	raw, off, size := applianceDisk(t)
	out := t.TempDir()
	res, err := Pack(context.Background(), Request{Spec: spec(t, smallSpec), Formats: formats(t, "raw"), OutDir: out, ReleaseKey: key}, raw)
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(out, "lab-2.bundle")
	if want := []string{filepath.Join(out, "lab-2.raw"), bundle}; !slices.Equal(res.Outputs, want) {
		t.Errorf("outputs %q, want %q", res.Outputs, want)
	}
	b, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	m, err := release.Verify(bytes.NewReader(b), []ed25519.PublicKey{pub}, release.Policy{Name: "lab", Architecture: "amd64", Running: "1", MaxSize: size})
	if err != nil {
		t.Fatal(err)
	}
	d, _ := os.Open(raw)
	defer d.Close()
	h := sha256.New()
	io.Copy(h, io.NewSectionReader(d, off, size))
	if m.Name != "lab" || m.Version != "2" || m.Size != size || m.ImageSHA256 != hex.EncodeToString(h.Sum(nil)) {
		t.Errorf("manifest %+v does not describe root A (%d bytes at %d)", m, size, off)
	}
}

// A disk without root A publishes nothing, the other formats included.
func TestReleaseBundleNoRootA(t *testing.T) {
	key, _ := releaseKey(t)
	out := t.TempDir()
	_, err := Pack(context.Background(), Request{Spec: spec(t, smallSpec), Formats: formats(t, "raw"), OutDir: out, ReleaseKey: key}, rawDisk(t))
	if !errors.Is(err, ErrNoRootA) {
		t.Fatalf("got %v, want ErrNoRootA", err)
	}
	if left := listDir(t, out); len(left) != 0 {
		t.Errorf("failed pack left %q in the output directory", left)
	}
}
