package appliance

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParseMAC(t *testing.T) {
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
			got, err := ParseMAC(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseMAC(%q) = %s, want error containing %q", tt.in, got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), MACRange) {
					t.Errorf("ParseMAC(%q) error = %q, want it to contain %q and the range %s", tt.in, err, tt.wantErr, MACRange)
				}
				if !errors.Is(err, ErrInvalidMAC) {
					t.Errorf("ParseMAC(%q) error does not wrap ErrInvalidMAC", tt.in)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseMAC(%q): %v", tt.in, err)
			}
			if got.String() != tt.want {
				t.Errorf("ParseMAC(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestDeriveMAC(t *testing.T) {
	seen := map[MAC]string{}
	for i := range 2000 {
		name := fmt.Sprintf("connector-%d", i)
		m := DeriveMAC(name)
		if err := m.Validate(); err != nil {
			t.Fatalf("DeriveMAC(%q) = %s: %v", name, m, err)
		}
		if again := DeriveMAC(name); again != m {
			t.Fatalf("DeriveMAC(%q) not deterministic: %s then %s", name, m, again)
		}
		seen[m] = name
	}
	if len(seen) < 1990 {
		t.Errorf("2000 names gave only %d distinct MACs", len(seen))
	}
	// A fixed value: changing the derivation changes every deployed
	// appliance's fingerprint, so it must be deliberate.
	if got, want := DeriveMAC("outpost-connector").String(), derivedConnector; got != want {
		t.Errorf("DeriveMAC(outpost-connector) = %s, want %s (changing it breaks deployed fingerprints)", got, want)
	}
}

func TestMACTextRoundTrip(t *testing.T) {
	m := DeriveMAC("x")
	b, _ := m.MarshalText()
	var back MAC
	if err := back.UnmarshalText(b); err != nil || back != m {
		t.Fatalf("round trip %s → %q → %s, %v", m, b, back, err)
	}
	if err := back.UnmarshalText([]byte("00:50:56:80:00:00")); err == nil {
		t.Fatal("UnmarshalText accepted an address outside the manual range")
	}
}

func FuzzParseMAC(f *testing.F) {
	f.Add("00:50:56:12:34:56")
	f.Add("01:00:5e:00:00:01")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMAC(s)
		if err != nil {
			return
		}
		if m.Validate() != nil {
			t.Fatalf("ParseMAC(%q) accepted %s which fails Validate", s, m)
		}
		if back, err := ParseMAC(m.String()); err != nil || back != m {
			t.Fatalf("round trip of %s: %s, %v", m, back, err)
		}
	})
}

const derivedConnector = "00:50:56:32:ef:d2"
