package release

// CompareVersions orders appliance versions (letters, digits and . + ~ _ -)
// the way Debian orders upstream versions: runs of digits compare as
// numbers, other runs character by character with letters before other
// characters, and '~' before anything, even the end ("2~rc1" < "2").
// It returns -1, 0 or +1.
func CompareVersions(a, b string) int {
	for a != "" || b != "" {
		var sa, sb string
		sa, a = span(a, false)
		sb, b = span(b, false)
		if c := compareText(sa, sb); c != 0 {
			return c
		}
		sa, a = span(a, true)
		sb, b = span(b, true)
		if c := compareNumber(sa, sb); c != 0 {
			return c
		}
	}
	return 0
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func span(s string, digits bool) (string, string) {
	i := 0
	for i < len(s) && isDigit(s[i]) == digits {
		i++
	}
	return s[:i], s[i:]
}

func order(c int) int {
	switch {
	case c == 0:
		return 0
	case c == '~':
		return -1
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		return c
	default:
		return c + 256
	}
}

func compareText(a, b string) int {
	for i := 0; i < len(a) || i < len(b); i++ {
		var ca, cb int
		if i < len(a) {
			ca = int(a[i])
		}
		if i < len(b) {
			cb = int(b[i])
		}
		if oa, ob := order(ca), order(cb); oa != ob {
			if oa < ob {
				return -1
			}
			return 1
		}
	}
	return 0
}

func compareNumber(a, b string) int {
	for len(a) > 0 && a[0] == '0' {
		a = a[1:]
	}
	for len(b) > 0 && b[0] == '0' {
		b = b[1:]
	}
	switch {
	case len(a) != len(b):
		if len(a) < len(b) {
			return -1
		}
		return 1
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
