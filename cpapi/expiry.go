package cpapi

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DefaultExpiry is the lifetime of a key created without KeySpec.ExpiresIn.
const DefaultExpiry = 14 * 24 * time.Hour

// ParseExpiresIn parses KeySpec.ExpiresIn: "never" (0, true), empty
// (DefaultExpiry) or a duration such as 14d, 36h, 90m or 1d12h.
func ParseExpiresIn(s string) (d time.Duration, never bool, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return DefaultExpiry, false, nil
	}
	if strings.EqualFold(s, "never") {
		return 0, true, nil
	}
	rest := s
	if i := strings.Index(rest, "d"); i >= 0 {
		n, err := strconv.Atoi(rest[:i])
		if err != nil || n < 0 {
			return 0, false, fmt.Errorf("expiry %q: want a duration like 14d, 36h or 1d12h, or never", s)
		}
		d = time.Duration(n) * 24 * time.Hour
		rest = rest[i+1:]
	}
	if rest != "" {
		x, err := time.ParseDuration(rest)
		if err != nil {
			return 0, false, fmt.Errorf("expiry %q: want a duration like 14d, 36h or 1d12h, or never", s)
		}
		d += x
	}
	if d <= 0 {
		return 0, false, fmt.Errorf("expiry %q: must be positive (or never)", s)
	}
	return d, false, nil
}
