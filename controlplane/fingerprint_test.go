package controlplane

import (
	"strings"
	"testing"
)

func TestFingerprintChange(t *testing.T) {
	for _, tc := range []struct{ old, cur, want string }{
		{"mac=00:50:56:00:00:01;uuid=a", "mac=00:50:56:00:00:02;uuid=a", "mac changed from 00:50:56:00:00:01 to 00:50:56:00:00:02"},
		{"mac=1;uuid=a", "mac=2;uuid=b", "mac changed from 1 to 2; uuid changed from a to b"},
		{"mac=1;uuid=a", "mac=1", "uuid a is missing"},
		{"mac=1", "mac=1;disk=x", "disk x is new"},
		{"opaque", "other", `was "opaque", now "other"`},
	} {
		if got := FingerprintChange(tc.old, tc.cur); got != tc.want {
			t.Errorf("FingerprintChange(%q, %q) = %q, want %q", tc.old, tc.cur, got, tc.want)
		}
	}
}

func FuzzFingerprintChange(f *testing.F) {
	f.Add("mac=00:50:56:00:00:01;uuid=a", "mac=00:50:56:00:00:02;uuid=a")
	f.Add("a", "b=")
	f.Fuzz(func(t *testing.T, old, cur string) {
		got := FingerprintChange(old, cur)
		if old != cur && strings.TrimSpace(got) == "" {
			t.Fatalf("empty description for %q → %q", old, cur)
		}
	})
}
