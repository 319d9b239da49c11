package cpapi

import "testing"

func TestParseExpiresIn(t *testing.T) {
	for in, want := range map[string]string{"14d": "336h0m0s", "36h": "36h0m0s", "1d12h": "36h0m0s", "": "336h0m0s"} {
		d, never, err := ParseExpiresIn(in)
		if err != nil || never || d.String() != want {
			t.Errorf("ParseExpiresIn(%q) = %v %v %v, want %s", in, d, never, err, want)
		}
	}
	if _, never, err := ParseExpiresIn("never"); !never || err != nil {
		t.Errorf("never: %v %v", never, err)
	}
	for _, bad := range []string{"0d", "-1h", "xd", "5", "1w"} {
		if _, _, err := ParseExpiresIn(bad); err == nil {
			t.Errorf("ParseExpiresIn(%q) accepted", bad)
		}
	}
}
