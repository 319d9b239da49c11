package imagebuild

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/disk/disktest"
	"github.com/outpost-appliance/outpost/internal/testtool"
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

// bootTree is a small root filesystem the builder accepts: a kernel, an
// initrd and systemd-boot (fake bytes: nothing boots it here).
func bootTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for p, c := range map[string]string{
		"boot/vmlinuz-6.1.0-1-cloud-amd64":             strings.Repeat("kernel ", 5000),
		"boot/initrd.img-6.1.0-1-cloud-amd64":          strings.Repeat("initrd ", 9000),
		"usr/lib/systemd/boot/efi/systemd-bootx64.efi": "systemd-boot",
		"etc/hostname": "lab\n",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// imageTarget keeps what release.Read hands over.
type imageTarget struct {
	img  *os.File
	boot map[string][]byte
}

func (it *imageTarget) BootFile(name string, r io.Reader) error {
	b, err := io.ReadAll(r)
	it.boot[name] = b
	return err
}

func (it *imageTarget) WriteImageAt(p []byte, off int64) error {
	_, err := it.img.WriteAt(p, off)
	return err
}

// TestReleaseBundle: with a release key, Build also publishes
// NAME-VERSION.bundle holding exactly root A and the kernel and initrd on
// the ESP, signed, for the spec's name, version and amd64; the root holds
// the key's public half, so the bundle's root does too.
func TestReleaseBundle(t *testing.T) {
	debugfs := testtool.Path(t, "debugfs")
	key, pub := releaseKey(t)
	out := t.TempDir()
	res, err := Build(context.Background(), Request{Spec: spec(t, smallSpec), Formats: formats(t, "raw"), OutDir: out, ReleaseKey: key, SourceDateEpoch: "1700000000"}, bootTree(t))
	if err != nil {
		t.Fatal(err)
	}
	raw, bundle := filepath.Join(out, "lab-2.raw"), filepath.Join(out, "lab-2.bundle")
	if want := []string{raw, bundle}; !slices.Equal(res.Outputs, want) {
		t.Errorf("outputs %q, want %q", res.Outputs, want)
	}
	off, size, err := RootA(raw)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.Open(bundle)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	img, err := os.Create(filepath.Join(t.TempDir(), "root.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	tgt := &imageTarget{img: img, boot: map[string][]byte{}}
	m, err := release.Read(b, []ed25519.PublicKey{pub}, release.Policy{Name: "lab", Architecture: "amd64", Running: "1", MaxSize: size}, tgt)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "lab" || m.Version != "2" || m.Size != size {
		t.Errorf("manifest %+v does not describe root A (%d bytes at %d)", m, size, off)
	}
	if m.PayloadSize > size/100 {
		t.Errorf("payload %d bytes for a root of %d holding a few KiB: not sparse", m.PayloadSize, size)
	}
	if err := img.Truncate(m.Size); err != nil {
		t.Fatal(err)
	}
	d, _ := os.Open(raw)
	defer d.Close()
	if !sameContent(t, io.NewSectionReader(d, off, size), img) {
		t.Error("the image the bundle gives is not root A")
	}
	if string(tgt.boot[release.KernelName]) != strings.Repeat("kernel ", 5000) || string(tgt.boot[release.InitrdName]) != strings.Repeat("initrd ", 9000) {
		t.Errorf("boot files: kernel %d bytes, initrd %d", len(tgt.boot[release.KernelName]), len(tgt.boot[release.InitrdName]))
	}

	// The public key in the root, checked in the image the bundle gives.
	pemKey, err := exec.Command(debugfs, "-R", "cat "+releaseKeyFile, img.Name()).Output()
	if err != nil {
		t.Fatalf("debugfs cat %s: %v", releaseKeyFile, err)
	}
	if k, err := release.ParsePublicKey(pemKey); err != nil || !k.Equal(pub) {
		t.Errorf("%s in the root = %q (%v), want the release key's public half", releaseKeyFile, pemKey, err)
	}

	// Without a release key: no bundle and no key file.
	out2 := t.TempDir()
	if _, err := Build(context.Background(), Request{Spec: spec(t, smallSpec), Formats: formats(t, "raw"), OutDir: out2, SourceDateEpoch: "1700000000"}, bootTree(t)); err != nil {
		t.Fatal(err)
	}
	if left := listDir(t, out2); !slices.Equal(left, []string{"lab-2.raw"}) {
		t.Errorf("without a release key: %q", left)
	}
	off, size, _ = RootA(filepath.Join(out2, "lab-2.raw"))
	root := filepath.Join(t.TempDir(), "root.img")
	r, _ := os.Open(filepath.Join(out2, "lab-2.raw"))
	defer r.Close()
	w, _ := os.Create(root)
	io.Copy(w, io.NewSectionReader(r, off, size))
	w.Close()
	if got, _ := exec.Command(debugfs, "-R", "stat "+releaseKeyFile, root).CombinedOutput(); !strings.Contains(string(got), "not found") {
		t.Errorf("without a release key the root has %s:\n%s", releaseKeyFile, got)
	}
}

// sameContent compares two readers in blocks.
func sameContent(t *testing.T, a, b io.Reader) bool {
	t.Helper()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for {
		na, ea := io.ReadFull(a, ba)
		nb, eb := io.ReadFull(b, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false
		}
		if ea != nil || eb != nil {
			return ea == eb || (na == nb && (ea == io.EOF || ea == io.ErrUnexpectedEOF) && (eb == io.EOF || eb == io.ErrUnexpectedEOF))
		}
	}
}

// A disk without slot a's kernel on its ESP publishes nothing.
func TestReleaseBundleNoBootFiles(t *testing.T) {
	key, _ := releaseKey(t)
	raw, _, _ := applianceDisk(t)
	out := t.TempDir()
	_, err := Pack(context.Background(), Request{Spec: spec(t, smallSpec), Formats: formats(t, "raw"), OutDir: out, ReleaseKey: key}, raw)
	if !errors.Is(err, ErrNoBootFiles) {
		t.Fatalf("got %v, want ErrNoBootFiles", err)
	}
	if left := listDir(t, out); len(left) != 0 {
		t.Errorf("failed pack left %q in the output directory", left)
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
