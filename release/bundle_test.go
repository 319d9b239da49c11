package release

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func testKey(t testing.TB) (ed25519.PrivateKey, ed25519.PublicKey) {
	t.Helper()
	priv, pub, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParsePrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k, p
}

// testImage is a root image with zero runs, text, random bytes longer than
// a Target's chunk, a lone non-zero byte in a zero block, and a tail that
// ends in the middle of a 4 KiB block.
func testImage() []byte {
	img := make([]byte, 5<<20+1536)
	copy(img[1<<20:], strings.Repeat("outpost root\n", 10000))
	r := rand.New(rand.NewPCG(1, 2))
	for i := 2 << 20; i < 2<<20+2500<<10; i++ {
		img[i] = byte(r.Uint32())
	}
	img[4<<20+100] = 1
	copy(img[len(img)-700:], "the end of the root image")
	return img
}

var (
	testKernel = []byte(strings.Repeat("kernel ", 1000))
	testInitrd = []byte(strings.Repeat("initrd ", 3000))
)

func contents(img []byte) Contents {
	return Contents{Image: bytes.NewReader(img), Size: int64(len(img)), Kernel: testKernel, Initrd: testInitrd}
}

var info = Info{Name: "outpost-connector", Version: "1.2.0", Architecture: "amd64"}

func bundleOf(t testing.TB, key ed25519.PrivateKey, in Info, c Contents) []byte {
	t.Helper()
	var b bytes.Buffer
	if _, err := Write(&b, in, c, key, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func bundle(t testing.TB, key ed25519.PrivateKey, in Info, img []byte) []byte {
	t.Helper()
	return bundleOf(t, key, in, contents(img))
}

var policy = Policy{Name: "outpost-connector", Architecture: "amd64", Running: "1.1.0", MaxSize: 8 << 20}

// fileTarget writes the image to a file and keeps the boot files, as the
// agent does with a partition and the ESP.
type fileTarget struct {
	t        *testing.T
	f        *os.File
	boot     map[string][]byte
	order    []string
	end      int64 // where the last write ended
	maxChunk int
	writes   int
}

func newFileTarget(t *testing.T) *fileTarget {
	f, err := os.Create(filepath.Join(t.TempDir(), "root.img"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &fileTarget{t: t, f: f, boot: map[string][]byte{}}
}

func (ft *fileTarget) BootFile(name string, r io.Reader) error {
	var b bytes.Buffer
	if _, err := io.Copy(&b, r); err != nil {
		return err
	}
	ft.boot[name] = b.Bytes()
	ft.order = append(ft.order, name)
	return nil
}

func (ft *fileTarget) WriteImageAt(p []byte, off int64) error {
	if off < ft.end {
		ft.t.Errorf("write at %d after a write that ended at %d", off, ft.end)
	}
	ft.end = off + int64(len(p))
	ft.maxChunk = max(ft.maxChunk, len(p))
	ft.writes++
	_, err := ft.f.WriteAt(p, off)
	return err
}

// image returns what the target wrote, size bytes (the gaps are zeros).
func (ft *fileTarget) image(size int64) []byte {
	if err := ft.f.Truncate(size); err != nil {
		ft.t.Fatal(err)
	}
	b, err := os.ReadFile(ft.f.Name())
	if err != nil {
		ft.t.Fatal(err)
	}
	return b
}

// TestRoundTrip: a written bundle verifies, reading it into a Target gives
// back the image (zero gaps included) and the boot files, the payload
// leaves the zeros out, and the same contents and key give the same bytes.
func TestRoundTrip(t *testing.T) {
	key, pub := testKey(t)
	img := testImage()
	b := bundle(t, key, info, img)
	m, err := Verify(bytes.NewReader(b), []ed25519.PublicKey{pub}, policy)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != info.Name || m.Version != info.Version || m.Architecture != "amd64" || m.Size != int64(len(img)) ||
		m.KernelSize != int64(len(testKernel)) || m.InitrdSize != int64(len(testInitrd)) {
		t.Errorf("manifest %+v", m)
	}
	if m.PayloadSize > 2500<<10+20<<10 {
		t.Errorf("payload %d bytes for an image of 2500 KiB of random data, text and zeros: zeros or text not left out", m.PayloadSize)
	}
	if names, _ := members(t, b); strings.Join(names, " ") != "manifest.json manifest.sig vmlinuz initrd.img root.img.zst" {
		t.Errorf("members %q", names)
	}

	ft := newFileTarget(t)
	got, err := Read(bytes.NewReader(b), []ed25519.PublicKey{pub}, policy, ft)
	if err != nil {
		t.Fatal(err)
	}
	if got != m {
		t.Errorf("Read's manifest %+v, Verify's %+v", got, m)
	}
	if !bytes.Equal(ft.image(m.Size), img) {
		t.Error("the image written through the Target differs from the original")
	}
	if !bytes.Equal(ft.boot[KernelName], testKernel) || !bytes.Equal(ft.boot[InitrdName], testInitrd) || strings.Join(ft.order, " ") != "vmlinuz initrd.img" {
		t.Errorf("boot files %q: kernel %d bytes, initrd %d", ft.order, len(ft.boot[KernelName]), len(ft.boot[InitrdName]))
	}
	if ft.maxChunk > 1<<20 || ft.writes < 3 {
		t.Errorf("%d writes, the largest %d bytes: want chunks of at most 1 MiB", ft.writes, ft.maxChunk)
	}

	if again := bundle(t, key, info, img); !bytes.Equal(again, b) {
		t.Error("the same contents and key gave different bundles")
	}
	// Another trusted key beside the right one changes nothing.
	_, other := testKey(t)
	if _, err := Verify(bytes.NewReader(b), []ed25519.PublicKey{other, pub}, Policy{}); err != nil {
		t.Errorf("with two trusted keys: %v", err)
	}
}

// TestStream checks the sparse stream Write makes: 4 KiB granularity,
// adjacent blocks merged, the end record.
func TestStream(t *testing.T) {
	img := make([]byte, 64<<10+512)
	img[5000] = 1                                   // block 1
	copy(img[8192:], bytes.Repeat([]byte{2}, 8192)) // blocks 2-3, merged with 1
	img[40<<10] = 3                                 // block 10
	img[64<<10+511] = 4                             // the 512-byte tail
	var s bytes.Buffer
	if err := writeStream(&s, bytes.NewReader(img), int64(len(img))); err != nil {
		t.Fatal(err)
	}
	var got []string
	err := readStream(bytes.NewReader(s.Bytes()), int64(len(img)), nil)
	if err != nil {
		t.Fatal(err)
	}
	for r := s.Bytes(); len(r) >= recordSize; {
		off, n := binary.BigEndian.Uint64(r), binary.BigEndian.Uint64(r[8:])
		got = append(got, fmt.Sprintf("%d+%d", off, n))
		r = r[recordSize+n:]
	}
	want := "4096+12288 40960+4096 65536+512 66048+0"
	if strings.Join(got, " ") != want {
		t.Errorf("records %s, want %s", strings.Join(got, " "), want)
	}
}

func TestNoInitrd(t *testing.T) {
	key, pub := testKey(t)
	img := testImage()
	c := contents(img)
	c.Initrd = nil
	b := bundleOf(t, key, info, c)
	if names, _ := members(t, b); strings.Join(names, " ") != "manifest.json manifest.sig vmlinuz root.img.zst" {
		t.Errorf("members %q", names)
	}
	ft := newFileTarget(t)
	m, err := Read(bytes.NewReader(b), []ed25519.PublicKey{pub}, policy, ft)
	if err != nil {
		t.Fatal(err)
	}
	if m.InitrdSize != 0 || m.InitrdSHA256 != "" || strings.Join(ft.order, " ") != "vmlinuz" || !bytes.Equal(ft.image(m.Size), img) {
		t.Errorf("manifest %+v, boot files %q", m, ft.order)
	}
}

func TestWriteRefuses(t *testing.T) {
	key, _ := testKey(t)
	for name, c := range map[string]Contents{
		"no kernel":           {Image: bytes.NewReader(make([]byte, 4096)), Size: 4096},
		"size not in sectors": {Image: bytes.NewReader(make([]byte, 4000)), Size: 4000, Kernel: testKernel},
		"short image":         {Image: bytes.NewReader(make([]byte, 4096)), Size: 8192, Kernel: testKernel},
	} {
		if _, err := Write(io.Discard, info, c, key, t.TempDir()); err == nil {
			t.Errorf("%s: written", name)
		}
	}
}

// members splits a bundle into its tar members.
func members(t *testing.T, b []byte) (names []string, data [][]byte) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		d, _ := io.ReadAll(tr)
		names, data = append(names, h.Name), append(data, d)
	}
}

func pack(t *testing.T, names []string, data [][]byte) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for i, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(data[i])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(data[i])
	}
	tw.Close()
	return b.Bytes()
}

// craft makes a bundle, signed with key, whose payload is the sparse
// stream given (however wrong) with correct hashes: what only a broken or
// malicious writer holding the key makes.
func craft(t *testing.T, key ed25519.PrivateKey, size int64, stream []byte) []byte {
	t.Helper()
	var z bytes.Buffer
	enc, _ := zstd.NewWriter(&z)
	enc.Write(stream)
	enc.Close()
	m := Manifest{Format: FormatVersion, Name: info.Name, Version: info.Version, Architecture: info.Architecture,
		Size: size, StreamSHA256: sum(stream), PayloadSize: int64(z.Len()), PayloadSHA256: sum(z.Bytes()),
		KernelSize: int64(len(testKernel)), KernelSHA256: sum(testKernel)}
	body, _ := json.Marshal(m)
	return pack(t, []string{ManifestName, SignatureName, KernelName, PayloadName},
		[][]byte{body, ed25519.Sign(key, body), testKernel, z.Bytes()})
}

// stream builds a sparse stream from (offset, length) pairs, the data
// being 0xAA; a length of 0 writes an end record.
func stream(recs ...uint64) []byte {
	var b bytes.Buffer
	for i := 0; i+1 < len(recs); i += 2 {
		binary.Write(&b, binary.BigEndian, recs[i])
		binary.Write(&b, binary.BigEndian, recs[i+1])
		b.Write(bytes.Repeat([]byte{0xAA}, int(min(recs[i+1], 1<<20))))
	}
	return b.Bytes()
}

// TestRefusals: every refusal is its sentinel error, and the signature is
// checked before the manifest's content and the members.
func TestRefusals(t *testing.T) {
	key, pub := testKey(t)
	otherKey, _ := testKey(t)
	img := testImage()
	good := bundle(t, key, info, img)
	names, data := members(t, good)
	const kernel, initrd, payload = 2, 3, 4

	resigned := func(edit func(m string) string) []byte {
		d := append([][]byte(nil), data...)
		d[0] = []byte(edit(string(data[0])))
		d[1] = ed25519.Sign(key, d[0])
		return pack(t, names, d)
	}
	field := func(name string) func(m string) string {
		return func(m string) string {
			i := strings.Index(m, `"`+name+`": "`) + len(`"`+name+`": "`)
			return m[:i] + strings.Repeat("0", 64) + m[i+64:]
		}
	}
	flip := func(member int) []byte {
		d := append([][]byte(nil), data...)
		p := bytes.Clone(d[member])
		p[len(p)/2] ^= 1
		d[member] = p
		return pack(t, names, d)
	}
	without := func(member int) []byte {
		return pack(t, append(names[:member:member], names[member+1:]...), append(data[:member:member], data[member+1:]...))
	}
	const size = 5<<20 + 1536
	tests := []struct {
		name   string
		bundle []byte
		policy Policy
		want   error
	}{
		{"signed by another key", bundle(t, otherKey, info, img), policy, ErrSignature},
		{"manifest edited after signing", func() []byte {
			d := append([][]byte(nil), data...)
			d[0] = bytes.Replace(d[0], []byte("1.2.0"), []byte("9.2.0"), 1)
			return pack(t, names, d)
		}(), policy, ErrSignature},
		{"signature missing", without(1), policy, ErrMalformed},
		{"signature truncated", pack(t, names, [][]byte{data[0], data[1][:10], data[2], data[3], data[4]}), policy, ErrSignature},
		{"kernel changed", flip(kernel), policy, ErrHash},
		{"initrd changed", flip(initrd), policy, ErrHash},
		{"payload changed", flip(payload), policy, ErrHash},
		{"kernel missing", without(kernel), policy, ErrMalformed},
		{"initrd missing", without(initrd), policy, ErrMalformed},
		{"payload of another image", pack(t, names, [][]byte{data[0], data[1], data[2], data[3], func() []byte {
			_, d := members(t, bundle(t, key, info, make([]byte, len(img))))
			return d[payload]
		}()}), policy, ErrHash},
		{"kernel hash wrong (signed)", resigned(field("kernel_sha256")), policy, ErrHash},
		{"initrd hash wrong (signed)", resigned(field("initrd_sha256")), policy, ErrHash},
		{"stream hash wrong (signed)", resigned(field("stream_sha256")), policy, ErrHash},
		{"payload hash wrong (signed)", resigned(field("payload_sha256")), policy, ErrHash},
		{"size wrong (signed)", resigned(func(m string) string {
			return strings.Replace(m, fmt.Sprintf(`"size": %d`, size), fmt.Sprintf(`"size": %d`, size+512), 1)
		}), policy, ErrMalformed},
		{"kernel size wrong (signed)", resigned(func(m string) string {
			return strings.Replace(m, fmt.Sprintf(`"kernel_size": %d`, len(testKernel)), fmt.Sprintf(`"kernel_size": %d`, len(testKernel)-1), 1)
		}), policy, ErrHash},
		{"another appliance", bundle(t, key, Info{"other-appliance", "1.2.0", "amd64"}, img), policy, ErrAppliance},
		{"another architecture", bundle(t, key, Info{"outpost-connector", "1.2.0", "arm64"}, img), policy, ErrArchitecture},
		{"older version", bundle(t, key, Info{"outpost-connector", "1.0.9", "amd64"}, img), policy, ErrDowngrade},
		{"older version, pre-release", bundle(t, key, Info{"outpost-connector", "1.1.0~rc1", "amd64"}, img), policy, ErrDowngrade},
		{"larger than the root partition", good, Policy{MaxSize: int64(len(img)) - 512}, ErrTooLarge},
		{"not a tar", []byte("hello"), policy, ErrMalformed},
		{"members out of order", pack(t, []string{names[1], names[0], names[2], names[3], names[4]}, [][]byte{data[1], data[0], data[2], data[3], data[4]}), policy, ErrMalformed},
		{"boot files swapped", pack(t, []string{names[0], names[1], names[3], names[2], names[4]}, [][]byte{data[0], data[1], data[3], data[2], data[4]}), policy, ErrMalformed},
		{"extra member", pack(t, append(names, "evil"), append(data, []byte("x"))), policy, ErrMalformed},
		{"unknown manifest field", resigned(func(m string) string {
			return strings.Replace(m, "{", `{"extra": 1,`, 1)
		}), policy, ErrMalformed},

		// Streams that are wrong although their hashes are signed.
		{"stream truncated", craft(t, key, 1<<20, stream(0, 4096)), policy, ErrMalformed},
		{"stream truncated inside an extent", craft(t, key, 1<<20, stream(0, 4096)[:1000]), policy, ErrMalformed},
		{"stream empty", craft(t, key, 1<<20, nil), policy, ErrMalformed},
		{"extents overlap", craft(t, key, 1<<20, stream(0, 8192, 4096, 4096, 1<<20, 0)), policy, ErrMalformed},
		{"extents out of order", craft(t, key, 1<<20, stream(8192, 4096, 0, 4096, 1<<20, 0)), policy, ErrMalformed},
		{"extent beyond the image", craft(t, key, 1<<20, stream(1<<20-4096, 8192, 1<<20, 0)), policy, ErrMalformed},
		{"extent offset overflows", craft(t, key, 1<<20, stream(1<<63, 4096, 1<<20, 0)), policy, ErrMalformed},
		{"extent not aligned", craft(t, key, 1<<20, stream(100, 4096, 1<<20, 0)), policy, ErrMalformed},
		{"end record with another size", craft(t, key, 1<<20, stream(0, 4096, 2<<20, 0)), policy, ErrMalformed},
		{"data after the end record", craft(t, key, 1<<20, append(stream(0, 4096, 1<<20, 0), 0)), policy, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(bytes.NewReader(tc.bundle), []ed25519.PublicKey{pub}, tc.policy)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			t.Log(err)
			// With a Target, the same refusal.
			if _, err := Read(bytes.NewReader(tc.bundle), []ed25519.PublicKey{pub}, tc.policy, newFileTarget(t)); !errors.Is(err, tc.want) {
				t.Fatalf("Read with a Target: err = %v, want %v", err, tc.want)
			}
		})
	}
	// A crafted stream that is right passes: craft itself is sound.
	if _, err := Verify(bytes.NewReader(craft(t, key, 1<<20, stream(0, 4096, 8192, 4096, 1<<20, 0))), []ed25519.PublicKey{pub}, policy); err != nil {
		t.Errorf("a well-formed crafted stream: %v", err)
	}

	// Allowed: a downgrade when asked, the same version, a newer one.
	for _, tc := range []struct {
		version string
		p       Policy
	}{
		{"1.0.9", Policy{Running: "1.1.0", AllowDowngrade: true}},
		{"1.1.0", Policy{Running: "1.1.0"}},
		{"1.10.0", Policy{Running: "1.9.0"}},
	} {
		b := bundle(t, key, Info{"outpost-connector", tc.version, "amd64"}, img[:1<<20])
		if _, err := Verify(bytes.NewReader(b), []ed25519.PublicKey{pub}, tc.p); err != nil {
			t.Errorf("%s with %+v: %v", tc.version, tc.p, err)
		}
	}
}

// TestBootFileHashSeenByTarget: a Target copying a boot file whose hash is
// wrong gets the error from its copy, before it would keep the file.
func TestBootFileHashSeenByTarget(t *testing.T) {
	key, pub := testKey(t)
	names, data := members(t, bundle(t, key, info, testImage()))
	data[2] = bytes.Clone(data[2])
	data[2][0] ^= 1
	var copyErr error
	tgt := bootFunc(func(name string, r io.Reader) error {
		_, copyErr = io.Copy(io.Discard, r)
		return copyErr
	})
	_, err := Read(bytes.NewReader(pack(t, names, data)), []ed25519.PublicKey{pub}, policy, tgt)
	if !errors.Is(copyErr, ErrHash) || !errors.Is(err, ErrHash) {
		t.Errorf("copy: %v; Read: %v; want ErrHash from both", copyErr, err)
	}
}

type bootFunc func(name string, r io.Reader) error

func (f bootFunc) BootFile(name string, r io.Reader) error { return f(name, r) }
func (f bootFunc) WriteImageAt(p []byte, off int64) error  { return nil }

// failAfter reads r, then fails the test if anything reads further.
type failAfter struct {
	t *testing.T
	r io.Reader
}

func (f *failAfter) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		f.t.Error("the bundle was read past the signature")
		return n, errors.New("read past the signature")
	}
	return n, err
}

// TestTooLargeBeforePayload: an image larger than the root partition is
// refused right after the signature; nothing after it is read.
func TestTooLargeBeforePayload(t *testing.T) {
	key, pub := testKey(t)
	b := bundle(t, key, info, testImage())
	// The end of the signature's data: two headers, the manifest padded.
	tr := tar.NewReader(bytes.NewReader(b))
	h, _ := tr.Next()
	end := 512 + (h.Size+511)/512*512 + 512 + ed25519.SignatureSize
	_, err := Verify(&failAfter{t: t, r: bytes.NewReader(b[:end])}, []ed25519.PublicKey{pub}, Policy{MaxSize: 1 << 20})
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("err = %v, want ErrTooLarge", err)
	}
}

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1", "1", 0}, {"1.0", "1.00", 0}, {"1.2", "1.10", -1}, {"2", "10", -1},
		{"1.2~rc1", "1.2", -1}, {"1.2~rc1", "1.2~rc2", -1}, {"1.2", "1.2.1", -1},
		{"1.2a", "1.2", 1}, {"1.2+b1", "1.2", 1}, {"1.2a", "1.2+b1", -1}, {"2026.01.5", "2025.12.31", 1},
	} {
		if got := CompareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := CompareVersions(tc.b, tc.a); got != -tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

func TestParseManifestReportsEveryProblem(t *testing.T) {
	_, err := ParseManifest([]byte(`{"format": 2, "name": "Bad Name", "version": "", "architecture": "", "size": 1000, "stream_sha256": "x",
		"payload_size": -1, "payload_sha256": "", "kernel_size": 0, "kernel_sha256": "", "initrd_size": -1, "initrd_sha256": ""}`))
	for _, f := range []string{"format", "name", "version", "architecture", "size", "stream_sha256", "payload_size", "payload_sha256", "kernel_size", "kernel_sha256", "initrd_size"} {
		if !strings.Contains(err.Error(), ": "+f+": ") {
			t.Errorf("no problem reported for %s in:\n%v", f, err)
		}
	}
	if !errors.Is(err, ErrMalformed) {
		t.Errorf("not ErrMalformed: %v", err)
	}
	_, err = ParseManifest([]byte(`{"format": 1, "name": "a", "version": "1", "architecture": "amd64", "size": 512, "stream_sha256": "` + sum(nil) + `",
		"payload_size": 1, "payload_sha256": "` + sum(nil) + `", "kernel_size": 1, "kernel_sha256": "` + sum(nil) + `", "initrd_size": 0, "initrd_sha256": "` + sum(nil) + `"}`))
	if err == nil || !strings.Contains(err.Error(), ": initrd_sha256: ") {
		t.Errorf("an initrd hash without an initrd: %v", err)
	}
}

func TestKeys(t *testing.T) {
	if _, err := ParsePrivateKey([]byte("nonsense")); err == nil {
		t.Error("nonsense parsed as a private key")
	}
	_, pub, _ := GenerateKey()
	if _, err := ParsePrivateKey(pub); err == nil {
		t.Error("a public key parsed as a private key")
	}
}

func smallContents() Contents {
	img := make([]byte, 8192)
	copy(img[4096:], "root")
	return Contents{Image: bytes.NewReader(img), Size: int64(len(img)), Kernel: []byte("k"), Initrd: []byte("i")}
}

// FuzzParseManifest: outside input never panics, and what parses is
// valid.
func FuzzParseManifest(f *testing.F) {
	key, _ := testKey(f)
	var b bytes.Buffer
	if _, err := Write(&b, info, smallContents(), key, f.TempDir()); err != nil {
		f.Fatal(err)
	}
	tr := tar.NewReader(&b)
	tr.Next()
	seed, _ := io.ReadAll(tr)
	f.Add(seed)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"format":1} {}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := ParseManifest(in)
		if err != nil {
			return
		}
		if err := m.validate(); err != nil {
			t.Fatalf("parsed manifest does not validate: %v", err)
		}
	})
}

// FuzzVerify: an arbitrary bundle never panics, and one that verifies
// carries the signed manifest: without the key, nothing else passes.
func FuzzVerify(f *testing.F) {
	key, pub := testKey(f)
	var b bytes.Buffer
	signed, err := Write(&b, info, smallContents(), key, f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := Verify(bytes.NewReader(in), []ed25519.PublicKey{pub}, Policy{})
		if err == nil && m != signed {
			t.Fatalf("a bundle verified with a manifest never signed: %+v", m)
		}
	})
}

// FuzzReadStream: whatever the stream, the writes it gives stay inside the
// image, in order, without overlap, in chunks of at most 1 MiB, and an
// accepted stream covers no more bytes than the image has.
func FuzzReadStream(f *testing.F) {
	const size = 3 << 20
	f.Add(stream(0, 4096, 8192, 4096, size, 0))
	f.Add(stream(0, 2<<20, size, 0))
	f.Add(stream(0, 8192, 4096, 4096, size, 0))
	f.Add(stream(size, 0))
	f.Fuzz(func(t *testing.T, in []byte) {
		var end int64
		err := readStream(bytes.NewReader(in), size, func(p []byte, off int64) error {
			if off < end || off+int64(len(p)) > size || len(p) > maxChunk || len(p) == 0 {
				t.Fatalf("write of %d bytes at %d after %d, image %d", len(p), off, end, size)
			}
			end = off + int64(len(p))
			return nil
		})
		if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrHash) {
			t.Fatalf("error of no kind: %v", err)
		}
	})
}
