package release

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
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

// testImage is a root image with a zero run, text and random bytes.
func testImage() []byte {
	img := make([]byte, 3<<20)
	copy(img[1<<20:], strings.Repeat("outpost root\n", 10000))
	r := rand.New(rand.NewPCG(1, 2))
	for i := 2 << 20; i < len(img); i++ {
		img[i] = byte(r.Uint32())
	}
	return img
}

var info = Info{Name: "outpost-connector", Version: "1.2.0", Architecture: "amd64"}

func bundle(t testing.TB, key ed25519.PrivateKey, in Info, img []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if _, err := Write(&b, in, bytes.NewReader(img), key, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

var policy = Policy{Name: "outpost-connector", Architecture: "amd64", Running: "1.1.0", MaxSize: 4 << 20}

// TestRoundTrip: a written bundle verifies, its manifest describes the
// image, and the same image and key give the same bytes.
func TestRoundTrip(t *testing.T) {
	key, pub := testKey(t)
	img := testImage()
	b := bundle(t, key, info, img)
	m, err := Verify(bytes.NewReader(b), []ed25519.PublicKey{pub}, policy)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != info.Name || m.Version != info.Version || m.Architecture != "amd64" || m.Size != int64(len(img)) {
		t.Errorf("manifest %+v", m)
	}
	if m.PayloadSize >= m.Size {
		t.Errorf("payload %d bytes, image %d: not compressed", m.PayloadSize, m.Size)
	}
	if again := bundle(t, key, info, img); !bytes.Equal(again, b) {
		t.Error("the same image and key gave different bundles")
	}
	// Another trusted key beside the right one changes nothing.
	_, other := testKey(t)
	if _, err := Verify(bytes.NewReader(b), []ed25519.PublicKey{other, pub}, Policy{}); err != nil {
		t.Errorf("with two trusted keys: %v", err)
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

// TestRefusals: every refusal is its sentinel error, and the signature is
// checked before the manifest's content and the payload.
func TestRefusals(t *testing.T) {
	key, pub := testKey(t)
	otherKey, _ := testKey(t)
	img := testImage()
	good := bundle(t, key, info, img)
	names, data := members(t, good)

	resigned := func(edit func(m string) string) []byte {
		d := append([][]byte(nil), data...)
		d[0] = []byte(edit(string(data[0])))
		d[1] = ed25519.Sign(key, d[0])
		return pack(t, names, d)
	}
	flipPayload := func() []byte {
		d := append([][]byte(nil), data...)
		p := bytes.Clone(d[2])
		p[len(p)/2] ^= 1
		d[2] = p
		return pack(t, names, d)
	}
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
		{"signature missing", pack(t, []string{names[0], names[2]}, [][]byte{data[0], data[2]}), policy, ErrMalformed},
		{"signature truncated", pack(t, names, [][]byte{data[0], data[1][:10], data[2]}), policy, ErrSignature},
		{"payload changed", flipPayload(), policy, ErrHash},
		{"payload of another image", pack(t, names, [][]byte{data[0], data[1], func() []byte {
			_, d := members(t, bundle(t, key, info, make([]byte, len(img))))
			return d[2]
		}()}), policy, ErrHash},
		{"image hash wrong (signed)", resigned(func(m string) string {
			i := strings.Index(m, `"image_sha256": "`) + len(`"image_sha256": "`)
			return m[:i] + strings.Repeat("0", 64) + m[i+64:]
		}), policy, ErrHash},
		{"size wrong (signed)", resigned(func(m string) string {
			return strings.Replace(m, `"size": 3145728`, `"size": 3145727`, 1)
		}), policy, ErrHash},
		{"another appliance", bundle(t, key, Info{"other-appliance", "1.2.0", "amd64"}, img), policy, ErrAppliance},
		{"another architecture", bundle(t, key, Info{"outpost-connector", "1.2.0", "arm64"}, img), policy, ErrArchitecture},
		{"older version", bundle(t, key, Info{"outpost-connector", "1.0.9", "amd64"}, img), policy, ErrDowngrade},
		{"older version, pre-release", bundle(t, key, Info{"outpost-connector", "1.1.0~rc1", "amd64"}, img), policy, ErrDowngrade},
		{"larger than the root partition", good, Policy{MaxSize: int64(len(img)) - 1}, ErrTooLarge},
		{"not a tar", []byte("hello"), policy, ErrMalformed},
		{"members out of order", pack(t, []string{names[1], names[0], names[2]}, [][]byte{data[1], data[0], data[2]}), policy, ErrMalformed},
		{"extra member", pack(t, append(names, "evil"), append(data, []byte("x"))), policy, ErrMalformed},
		{"unknown manifest field", resigned(func(m string) string {
			return strings.Replace(m, "{", `{"extra": 1,`, 1)
		}), policy, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(bytes.NewReader(tc.bundle), []ed25519.PublicKey{pub}, tc.policy)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			t.Log(err)
		})
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
	_, err := ParseManifest([]byte(`{"format": 2, "name": "Bad Name", "version": "", "architecture": "", "size": 0, "image_sha256": "x", "payload_size": -1, "payload_sha256": ""}`))
	for _, f := range []string{"format", "name", "version", "architecture", "size", "image_sha256", "payload_size", "payload_sha256"} {
		if !strings.Contains(err.Error(), ": "+f+": ") {
			t.Errorf("no problem reported for %s in:\n%v", f, err)
		}
	}
	if !errors.Is(err, ErrMalformed) {
		t.Errorf("not ErrMalformed: %v", err)
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

// FuzzParseManifest: outside input never panics, and what parses is
// valid.
func FuzzParseManifest(f *testing.F) {
	key, _ := testKey(f)
	var b bytes.Buffer
	if _, err := Write(&b, info, bytes.NewReader([]byte("root")), key, f.TempDir()); err != nil {
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
	signed, err := Write(&b, info, bytes.NewReader([]byte("root image")), key, f.TempDir())
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
