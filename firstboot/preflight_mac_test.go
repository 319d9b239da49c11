package firstboot

import "testing"

// TestInManualRange checks preflight's MAC rule against the contract's
// edges: the manual range is 00:50:56:00:00:00–00:50:56:3F:FF:FF.
func TestInManualRange(t *testing.T) {
	for mac, want := range map[string]bool{
		"00:50:56:00:12:34": true,
		"00:50:56:00:00:00": true,
		"00:50:56:3f:ff:ff": true,
		"00:50:56:40:00:00": false, // reserved for vCenter and ESXi
		"00:50:56:ff:ff:ff": false,
		"00:0c:29:12:34:56": false, // an ESXi-generated MAC
		"52:54:00:12:34:56": false,
		"":                  false,
	} {
		if got := inManualRange(mac); got != want {
			t.Errorf("inManualRange(%q) = %v, want %v", mac, got, want)
		}
	}
}
