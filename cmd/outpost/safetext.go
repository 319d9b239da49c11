package main

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// safe makes text that came from the control plane (and so, often, from a
// connector) harmless on a terminal: C0 and C1 control characters, DEL,
// bidirectional overrides and invalid UTF-8 are written as Go escapes
// (\x1b, \r, \u009b, \u202e), everything else is left alone. JSON output
// needs none of this: the encoder escapes control characters itself.
func safe(s string) string { return escapeControls(s, false) }

// safeLines is safe for multi-line messages: it keeps newlines and tabs.
func safeLines(s string) string { return escapeControls(s, true) }

func escapeControls(s string, keepLines bool) string {
	clean := true
	for _, r := range s {
		if unsafeRune(r, keepLines) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b.WriteString(`\x` + strconv.FormatUint(uint64(s[i]), 16))
		case unsafeRune(r, keepLines):
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func unsafeRune(r rune, keepLines bool) bool {
	switch {
	case keepLines && (r == '\n' || r == '\t'):
		return false
	case r < 0x20, r >= 0x7f && r < 0xa0:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c:
		return true // bidirectional controls reorder what follows them
	case r == utf8.RuneError:
		return true
	}
	return false
}
