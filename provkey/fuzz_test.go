package provkey

import (
	"crypto/sha256"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzCheck feeds Check arbitrary bytes. It must never panic, never leak a
// blob it recognised into a finding, and agree with Parse: what it calls valid
// normalises to a key that parses and round-trips, and checks clean.
func FuzzCheck(f *testing.F) {
	k := testKey(f)
	f.Add([]byte(k.Reveal()))
	files, _ := filepath.Glob(filepath.Join("testdata", "corpus", "*.txt"))
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		res := Check(in)
		for _, fd := range res.Findings {
			if fd.Message == "" || fd.Fix == "" || fd.Code == "" {
				t.Fatalf("finding without message, fix or code: %+v", fd)
			}
		}
		if res.Valid() != (res.Parsed && res.Count(Error) == 0) {
			t.Fatal("Valid disagrees with Parsed and the errors")
		}
		if !res.Parsed {
			return
		}
		text := res.Key.Reveal()
		blob := text[strings.LastIndexByte(text, '|')+1:]
		for _, fd := range res.Findings {
			if l := leak(fd.String()+fd.Fix, blob); l != "" {
				t.Fatalf("finding %q leaks %q", fd, l)
			}
		}
		back, err := Parse(text)
		if err != nil || back != res.Key {
			t.Fatalf("normalised key does not round-trip: %v", err)
		}
		if again := Check([]byte(text)); !again.Valid() || len(again.Findings) != 0 {
			t.Fatalf("normalised key checks with findings: %v", again.Findings)
		}
	})
}

// FuzzParse feeds Parse arbitrary text. It must never panic; whatever it
// accepts must be the exact canonical text of its key, and Check must find
// nothing wrong with it.
func FuzzParse(f *testing.F) {
	k := testKey(f)
	f.Add(k.Reveal())
	f.Add("1|[::1]:8443|" + k.Reveal()[18:])
	f.Add("3|api.example.com|AbC==")
	f.Fuzz(func(t *testing.T, text string) {
		k, err := Parse(text)
		if err != nil {
			return
		}
		if k.Reveal() != text {
			t.Fatalf("Parse accepted a non-canonical text")
		}
		if back, err := Parse(k.Reveal()); err != nil || back != k {
			t.Fatalf("round trip failed: %v", err)
		}
		if res := Check([]byte(text)); !res.Valid() || len(res.Findings) != 0 || res.Key != k {
			t.Fatalf("Check disagrees with Parse: %v", res.Findings)
		}
	})
}

// FuzzRoundTrip generates keys from fuzzed randomness and hosts: every key
// Generate makes parses back to itself, checks clean, and survives the safe
// damage (quotes, a trailing CRLF, wrapping) that Check repairs.
func FuzzRoundTrip(f *testing.F) {
	f.Add(uint64(1), "api.example.com", uint8(80))
	f.Add(uint64(2), "10.0.0.1:8443", uint8(1))
	f.Add(uint64(3), "[2001:db8::1]:443", uint8(33))
	f.Fuzz(func(t *testing.T, seed uint64, host string, width uint8) {
		var s [32]byte
		for i := range 8 {
			s[i] = byte(seed >> (8 * i))
		}
		k, err := Generate(host, sha256.Sum256([]byte(host)), rand.NewChaCha8(s))
		if err != nil {
			return
		}
		text := k.Reveal()
		if back, err := Parse(text); err != nil || back != k {
			t.Fatalf("Parse(Reveal()) = %v, %v", back, err)
		}
		if res := Check([]byte(text)); !res.Valid() || len(res.Findings) != 0 || res.Key != k {
			t.Fatalf("Check of a fresh key: %v", res.Findings)
		}
		i := strings.LastIndexByte(text, '|') + 1
		n := int(width%100) + 1
		damaged := "\"" + text[:i] + wrapEvery(text[i:], n, "\r\n") + "\"\r\n"
		res := Check([]byte(damaged))
		if !res.Valid() || res.Key != k || res.Count(Error) != 0 {
			t.Fatalf("safe damage not repaired: %v", res.Findings)
		}
	})
}

// FuzzCheckSecret damages a real key in fuzzed ways (insertions, deletions,
// moved pieces) and asserts that no finding repeats any 8 characters of its
// blob, whatever the damage.
func FuzzCheckSecret(f *testing.F) {
	f.Add([]byte{0, 0, '|'}, []byte("x"))
	f.Add([]byte{2, 18, 104}, []byte(""))
	f.Add([]byte{1, 5, 3, 0, 120, '"'}, []byte("\u201c"))
	f.Fuzz(func(t *testing.T, ops []byte, extra []byte) {
		k := testKey(t)
		text := k.Reveal()
		blob := text[strings.LastIndexByte(text, '|')+1:]
		s := text
		for i := 0; i+2 < len(ops) && i < 30; i += 3 {
			op, pos, arg := ops[i]%4, int(ops[i+1])%(len(s)+1), int(ops[i+2])
			switch op {
			case 0: // insert a byte
				s = s[:pos] + string([]byte{byte(arg)}) + s[pos:]
			case 1: // insert the extra text
				s = s[:pos] + string(extra) + s[pos:]
			case 2: // move the tail to the front
				s = s[pos:] + s[:pos]
			case 3: // delete
				end := min(len(s), pos+arg%8)
				s = s[:pos] + s[end:]
			}
		}
		for _, fd := range Check([]byte(s)).Findings {
			if l := leak(fd.String()+fd.Fix, blob); l != "" && !strings.Contains(string(extra), l) {
				t.Fatalf("finding %q repeats %q of the blob", fd, l)
			}
		}
	})
}
