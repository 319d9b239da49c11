package disktest

import (
	"os"
	"testing"
)

func TestSameFiles(t *testing.T) {
	s := Spec{Name: "s", Size: 8 * mib, Seed: 1, Regions: []Region{{mib, mib, Text}}}
	a, b := MakeRaw(t, s), MakeRaw(t, s)
	if !sameFiles(t, a, b) {
		t.Fatal("equal files differ")
	}
	f, err := os.OpenFile(b, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{1}, 6*mib) // in a hole of a
	f.Close()
	if sameFiles(t, a, b) || sameFiles(t, b, a) {
		t.Error("files differing in a hole are the same")
	}
	os.Truncate(b, 8*mib+1)
	if sameFiles(t, a, b) {
		t.Error("files of different sizes are the same")
	}
}
