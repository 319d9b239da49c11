package cpapi

import (
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// Limits of what a connector reports. The control plane stores these
// strings and shows them to admins, so it accepts only this grammar.
const (
	MaxFingerprintLen = 1024 // the whole fingerprint
	MaxFingerprintKey = 32   // one key, [a-z][a-z0-9_-]*
	MaxFingerprintVal = 256  // one value, [A-Za-z0-9._:/+-]+
	MaxVersionLen     = 64   // [A-Za-z0-9._+~-]+
	MaxNonceLen       = 128  // printable ASCII, no spaces
	MaxAddresses      = 64   // addresses in one heartbeat
)

// CheckFingerprint checks a hardware fingerprint: key=value pairs
// separated by ';' ("mac=00:50:56:00:00:01;uuid=4210…"), each key once,
// keys of lower-case letters, digits, '_' and '-', values of letters,
// digits and ". _ : / + -". The error names the field and the offending
// character (quoted, so control characters are visible).
func CheckFingerprint(fp string) error {
	if fp == "" {
		return fmt.Errorf("fingerprint is empty; send key=value pairs separated by ';' (mac=…;uuid=…)")
	}
	if len(fp) > MaxFingerprintLen {
		return fmt.Errorf("fingerprint is %d bytes long; at most %d are accepted", len(fp), MaxFingerprintLen)
	}
	if i, c, ok := findControl(fp); ok {
		return fmt.Errorf("fingerprint has the control character %q at byte %d; send key=value pairs separated by ';' of printable characters", c, i)
	}
	seen := map[string]bool{}
	for _, pair := range strings.Split(fp, ";") {
		k, v, ok := strings.Cut(pair, "=")
		if !ok {
			return fmt.Errorf("fingerprint part %q is not key=value; send key=value pairs separated by ';'", pair)
		}
		if k == "" || len(k) > MaxFingerprintKey {
			return fmt.Errorf("fingerprint key %q: use 1 to %d characters", k, MaxFingerprintKey)
		}
		for i, c := range k {
			if !(c >= 'a' && c <= 'z' || i > 0 && (c >= '0' && c <= '9' || c == '_' || c == '-')) {
				return fmt.Errorf("fingerprint key %q: %q is not allowed; use lower-case letters, digits, '_' and '-', starting with a letter", k, c)
			}
		}
		if seen[k] {
			return fmt.Errorf("fingerprint key %q appears twice", k)
		}
		seen[k] = true
		if v == "" || len(v) > MaxFingerprintVal {
			return fmt.Errorf("fingerprint value of %s: use 1 to %d characters", k, MaxFingerprintVal)
		}
		for _, c := range v {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._:/+-", c)) {
				return fmt.Errorf("fingerprint value of %s: %q is not allowed; use letters, digits and . _ : / + -", k, c)
			}
		}
	}
	return nil
}

// CheckVersion checks the software version a connector reports: 1 to
// MaxVersionLen letters, digits and ". _ + ~ -" (1.4.2, 1.4.2+g1a2b3c,
// 2.0~rc1).
func CheckVersion(v string) error {
	if v == "" || len(v) > MaxVersionLen {
		return fmt.Errorf("version: use 1 to %d characters (got %d)", MaxVersionLen, len(v))
	}
	for _, c := range v {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._+~-", c)) {
			return fmt.Errorf("version %q: %q is not allowed; use letters, digits and . _ + ~ -", v, c)
		}
	}
	return nil
}

// CheckNonce checks an enrollment nonce: 1 to MaxNonceLen printable ASCII
// characters without spaces (the appliance sends hex).
func CheckNonce(n string) error {
	if n == "" || len(n) > MaxNonceLen {
		return fmt.Errorf("nonce: use 1 to %d characters (got %d)", MaxNonceLen, len(n))
	}
	for _, c := range n {
		if c <= ' ' || c > '~' {
			return fmt.Errorf("nonce: %q is not allowed; use printable ASCII without spaces (hex)", c)
		}
	}
	return nil
}

// CheckAddresses checks the addresses a heartbeat reports: at most
// MaxAddresses IPv4 or IPv6 addresses, each with its prefix length
// (192.0.2.10/24, 2001:db8::10/64) or without.
func CheckAddresses(addrs []string) error {
	if len(addrs) > MaxAddresses {
		return fmt.Errorf("addresses: %d sent; at most %d are accepted", len(addrs), MaxAddresses)
	}
	for _, a := range addrs {
		if _, err := netip.ParsePrefix(a); err == nil {
			continue
		}
		if _, err := netip.ParseAddr(a); err == nil {
			continue
		}
		return fmt.Errorf("addresses: %q is not an IP address with an optional prefix length (192.0.2.10/24)", a)
	}
	return nil
}

// MaxUpgradeReason is the longest UpgradeReport.Reason accepted.
const MaxUpgradeReason = 1024

// CheckUpgradeReport checks what a connector reports about an upgrade: a
// version (CheckVersion), a state UpgradeInstalling or UpgradeFailed, and
// a reason of at most MaxUpgradeReason bytes without control characters.
func CheckUpgradeReport(r UpgradeReport) error {
	if err := CheckVersion(r.Version); err != nil {
		return fmt.Errorf("upgrade.%v", err)
	}
	if r.State != UpgradeInstalling && r.State != UpgradeFailed {
		return fmt.Errorf("upgrade.state %q: use %q or %q", r.State, UpgradeInstalling, UpgradeFailed)
	}
	if len(r.Reason) > MaxUpgradeReason {
		return fmt.Errorf("upgrade.reason is %d bytes long; at most %d are accepted", len(r.Reason), MaxUpgradeReason)
	}
	if i, c, ok := findControl(r.Reason); ok {
		return fmt.Errorf("upgrade.reason has the control character %q at byte %d; send one line of printable text", c, i)
	}
	return nil
}

// CleanUpgradeReason makes reason acceptable to CheckUpgradeReport: control
// characters become spaces, and it is cut (at a character boundary, with
// "…") to MaxUpgradeReason bytes.
func CleanUpgradeReason(reason string) string {
	reason = strings.Map(func(c rune) rune {
		if isControl(c) {
			return ' '
		}
		return c
	}, strings.ToValidUTF8(reason, "?"))
	if len(reason) > MaxUpgradeReason {
		cut := MaxUpgradeReason - len("…")
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut] + "…"
	}
	return reason
}

func isControl(c rune) bool { return c < 0x20 || c >= 0x7f && c < 0xa0 }

// findControl returns the first C0, DEL or C1 control character of s.
func findControl(s string) (int, rune, bool) {
	for i, c := range s {
		if isControl(c) {
			return i, c, true
		}
	}
	return 0, 0, false
}
