package builder

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestDiskFileMatchesFile drives the cached, hole-punching backend with
// random reads and writes (small, large, zero, unaligned) and checks every
// read, and the file after Flush, against a plain byte slice.
func TestDiskFileMatchesFile(t *testing.T) {
	const size = 4 << 20
	f, err := os.Create(filepath.Join(t.TempDir(), "d"))
	must(t, err)
	defer f.Close()
	must(t, f.Truncate(size))
	d := &diskFile{f: f}
	want := make([]byte, size)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		n := 1 + r.IntN(8192)
		if r.IntN(10) == 0 {
			n = 64<<10 + r.IntN(256<<10) // bypasses the cache
		}
		off := r.Int64N(size - int64(n))
		if r.IntN(2) == 0 {
			b := make([]byte, n)
			if r.IntN(3) > 0 { // a third are zeros: hole punching
				for j := range b {
					b[j] = byte(r.IntN(256))
				}
			}
			if _, err := d.WriteAt(b, off); err != nil {
				t.Fatal(err)
			}
			copy(want[off:], b)
		} else {
			b := make([]byte, n)
			if _, err := d.ReadAt(b, off); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, want[off:off+int64(n)]) {
				t.Fatalf("op %d: read %d bytes at %d differs from what was written", i, n, off)
			}
		}
	}
	must(t, d.Flush())
	got, err := os.ReadFile(f.Name())
	must(t, err)
	if !bytes.Equal(got, want) {
		t.Fatal("file after Flush differs from what was written")
	}
}
