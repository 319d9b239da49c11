package mac

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr string // substring of the refusal
	}{
		{in: "00:50:56:00:00:00", want: "00:50:56:00:00:00"},
		{in: "00:50:56:3F:FF:FF", want: "00:50:56:3f:ff:ff"},
		{in: "00-50-56-12-34-56", want: "00:50:56:12:34:56"},
		{in: " 00:50:56:01:02:03\n", want: "00:50:56:01:02:03"},
		{in: "00:50:56:40:00:00", wantErr: "fourth octet must be 00–3F"},
		{in: "00:50:56:ff:ff:ff", wantErr: "outside VMware's manual range"},
		{in: "00:0c:29:12:34:56", wantErr: "must start with 00:50:56"},
		{in: "01:50:56:00:00:01", wantErr: "multicast"},
		{in: "ff:ff:ff:ff:ff:ff", wantErr: "multicast"},
		{in: "00:50:56:00:00", wantErr: "not six hex octets"},
		{in: "00:50:56:00:00:zz", wantErr: "not six hex octets"},
		{in: "00:50:56:00:00:00:00:00", wantErr: "not six hex octets"},
		{in: "", wantErr: "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Parse(%q) = %s, want error containing %q", tt.in, got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), Range) {
					t.Errorf("Parse(%q) error = %q, want it to contain %q and the range %s", tt.in, err, tt.wantErr, Range)
				}
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("Parse(%q) error does not wrap ErrInvalid", tt.in)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if got.String() != tt.want {
				t.Errorf("Parse(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestDerive(t *testing.T) {
	seen := map[MAC]string{}
	for i := range 2000 {
		name := fmt.Sprintf("connector-%d", i)
		m := Derive(name)
		if err := m.Validate(); err != nil {
			t.Fatalf("Derive(%q) = %s: %v", name, m, err)
		}
		if again := Derive(name); again != m {
			t.Fatalf("Derive(%q) not deterministic: %s then %s", name, m, again)
		}
		seen[m] = name
	}
	if len(seen) < 1990 {
		t.Errorf("2000 names gave only %d distinct MACs", len(seen))
	}
	// A fixed value: changing the derivation changes every deployed
	// appliance's fingerprint, so it must be deliberate.
	if got, want := Derive("outpost-connector").String(), derivedConnector; got != want {
		t.Errorf("Derive(outpost-connector) = %s, want %s (changing it breaks deployed fingerprints)", got, want)
	}
}

func TestTextRoundTrip(t *testing.T) {
	m := Derive("x")
	b, _ := m.MarshalText()
	var back MAC
	if err := back.UnmarshalText(b); err != nil || back != m {
		t.Fatalf("round trip %s → %q → %s, %v", m, b, back, err)
	}
	if err := back.UnmarshalText([]byte("00:50:56:80:00:00")); err == nil {
		t.Fatal("UnmarshalText accepted an address outside the manual range")
	}
}

func FuzzParse(f *testing.F) {
	f.Add("00:50:56:12:34:56")
	f.Add("01:00:5e:00:00:01")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := Parse(s)
		if err != nil {
			return
		}
		if m.Validate() != nil {
			t.Fatalf("Parse(%q) accepted %s which fails Validate", s, m)
		}
		if back, err := Parse(m.String()); err != nil || back != m {
			t.Fatalf("round trip of %s: %s, %v", m, back, err)
		}
	})
}

const derivedConnector = "00:50:56:32:ef:d2"
