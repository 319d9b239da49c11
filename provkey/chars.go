package provkey

import (
	"fmt"
	"sort"
	"unicode"
)

// charNames names the non-ASCII characters that Check recognises. It is a
// deliberately small table: the characters that consoles, word processors,
// chat tools and e-mail put into pasted text.
var charNames = map[rune]string{
	// typographic quotes
	0x00AB: "LEFT-POINTING DOUBLE ANGLE QUOTATION MARK",
	0x00BB: "RIGHT-POINTING DOUBLE ANGLE QUOTATION MARK",
	0x00B4: "ACUTE ACCENT",
	0x2018: "LEFT SINGLE QUOTATION MARK",
	0x2019: "RIGHT SINGLE QUOTATION MARK",
	0x201A: "SINGLE LOW-9 QUOTATION MARK",
	0x201B: "SINGLE HIGH-REVERSED-9 QUOTATION MARK",
	0x201C: "LEFT DOUBLE QUOTATION MARK",
	0x201D: "RIGHT DOUBLE QUOTATION MARK",
	0x201E: "DOUBLE LOW-9 QUOTATION MARK",
	0x201F: "DOUBLE HIGH-REVERSED-9 QUOTATION MARK",
	0x2032: "PRIME",
	0x2033: "DOUBLE PRIME",
	0x2039: "SINGLE LEFT-POINTING ANGLE QUOTATION MARK",
	0x203A: "SINGLE RIGHT-POINTING ANGLE QUOTATION MARK",
	// spaces
	0x00A0: "NO-BREAK SPACE",
	0x1680: "OGHAM SPACE MARK",
	0x2000: "EN QUAD",
	0x2001: "EM QUAD",
	0x2002: "EN SPACE",
	0x2003: "EM SPACE",
	0x2004: "THREE-PER-EM SPACE",
	0x2005: "FOUR-PER-EM SPACE",
	0x2006: "SIX-PER-EM SPACE",
	0x2007: "FIGURE SPACE",
	0x2008: "PUNCTUATION SPACE",
	0x2009: "THIN SPACE",
	0x200A: "HAIR SPACE",
	0x202F: "NARROW NO-BREAK SPACE",
	0x205F: "MEDIUM MATHEMATICAL SPACE",
	0x3000: "IDEOGRAPHIC SPACE",
	0x0085: "NEXT LINE (NEL)",
	0x2028: "LINE SEPARATOR",
	0x2029: "PARAGRAPH SEPARATOR",
	// invisible
	0x00AD: "SOFT HYPHEN",
	0x200B: "ZERO WIDTH SPACE",
	0x200C: "ZERO WIDTH NON-JOINER",
	0x200D: "ZERO WIDTH JOINER",
	0x200E: "LEFT-TO-RIGHT MARK",
	0x200F: "RIGHT-TO-LEFT MARK",
	0x2060: "WORD JOINER",
	0xFEFF: "ZERO WIDTH NO-BREAK SPACE",
	// look-alikes of ASCII
	0x00A6: "BROKEN BAR",
	0x2223: "DIVIDES",
	0x2502: "BOX DRAWINGS LIGHT VERTICAL",
	0x2010: "HYPHEN",
	0x2011: "NON-BREAKING HYPHEN",
	0x2012: "FIGURE DASH",
	0x2013: "EN DASH",
	0x2014: "EM DASH",
	0x2212: "MINUS SIGN",
	0x2026: "HORIZONTAL ELLIPSIS",
}

var asciiNames = [...]string{
	' ': "SPACE", '!': "EXCLAMATION MARK", '"': "QUOTATION MARK", '#': "NUMBER SIGN",
	'$': "DOLLAR SIGN", '%': "PERCENT SIGN", '&': "AMPERSAND", '\'': "APOSTROPHE",
	'(': "LEFT PARENTHESIS", ')': "RIGHT PARENTHESIS", '*': "ASTERISK", '+': "PLUS SIGN",
	',': "COMMA", '-': "HYPHEN-MINUS", '.': "FULL STOP", '/': "SOLIDUS", ':': "COLON",
	';': "SEMICOLON", '<': "LESS-THAN SIGN", '=': "EQUALS SIGN", '>': "GREATER-THAN SIGN",
	'?': "QUESTION MARK", '@': "COMMERCIAL AT", '[': "LEFT SQUARE BRACKET",
	'\\': "REVERSE SOLIDUS", ']': "RIGHT SQUARE BRACKET", '^': "CIRCUMFLEX ACCENT",
	'_': "LOW LINE", '`': "GRAVE ACCENT", '{': "LEFT CURLY BRACKET", '|': "VERTICAL LINE",
	'}': "RIGHT CURLY BRACKET", '~': "TILDE",
	0x00: "NULL", 0x09: "CHARACTER TABULATION", 0x0A: "LINE FEED", 0x0D: "CARRIAGE RETURN",
	0x1B: "ESCAPE", 0x7F: "DELETE",
}

var digitNames = [...]string{"ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE"}

// charName returns the Unicode name of r when this package knows it, or a
// description in parentheses ("(Cyrillic character)") when it does not.
func charName(r rune) string {
	switch {
	case r >= 'A' && r <= 'Z':
		return "LATIN CAPITAL LETTER " + string(r)
	case r >= 'a' && r <= 'z':
		return "LATIN SMALL LETTER " + string(r-'a'+'A')
	case r >= '0' && r <= '9':
		return "DIGIT " + digitNames[r-'0']
	case r >= 0 && int(r) < len(asciiNames) && asciiNames[r] != "":
		return asciiNames[r]
	case r < 0x20 || r >= 0x7F && r < 0xA0:
		return "(control character)"
	case r >= 0xFF01 && r <= 0xFF5E:
		return "FULLWIDTH " + charName(r-0xFEE0)
	}
	if n, ok := charNames[r]; ok {
		return n
	}
	if s := scriptOf(r); s != "" && s != "Common" && s != "Inherited" {
		return "(" + s + " character)"
	}
	return "(character outside ASCII)"
}

func scriptOf(r rune) string {
	names := make([]string, 0, len(unicode.Scripts))
	for name := range unicode.Scripts {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if unicode.Is(unicode.Scripts[name], r) {
			return name
		}
	}
	return ""
}

func codePoint(r rune) string { return fmt.Sprintf("U+%04X", r) }

// charClass is what Check makes of one character before looking at the
// key's structure.
type charClass int

const (
	classPlain     charClass = iota // ASCII that may appear in a key
	classQuote                      // typographic quote: stands in for '"'
	classFullQuote                  // fullwidth quote: stands in for '"'
	classNBSP                       // no-break space: stands in for ' '
	classSpace                      // other Unicode space: stands in for ' '
	classZeroWidth                  // invisible: dropped
	classLookalike                  // looks like an ASCII character it stands in for
	classEllipsis                   // U+2026: a redacted or shortened key
	classControl                    // control character: dropped
	classOther                      // any other non-ASCII character: dropped
)

// classify returns r's class and the ASCII character it stands in for (-1
// when it is dropped).
func classify(r rune) (charClass, rune) {
	switch r {
	case 0x2018, 0x2019, 0x201A, 0x201B, 0x201C, 0x201D, 0x201E, 0x201F,
		0x2032, 0x2033, 0x00AB, 0x00BB, 0x2039, 0x203A, 0x00B4:
		return classQuote, '"'
	case 0xFF02, 0xFF07:
		return classFullQuote, '"'
	case 0x00A0, 0x202F, 0x2007:
		return classNBSP, ' '
	case 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2008,
		0x2009, 0x200A, 0x205F, 0x3000:
		return classSpace, ' '
	case 0x0085, 0x2028, 0x2029:
		return classSpace, '\n'
	case 0x00AD, 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2060, 0xFEFF:
		return classZeroWidth, -1
	case 0x00A6, 0x2223, 0x2502:
		return classLookalike, '|'
	case 0x2010, 0x2011, 0x2012, 0x2013, 0x2014, 0x2212:
		return classLookalike, '-'
	case 0x2026:
		return classEllipsis, -1
	case '\t', '\n', '\r':
		return classPlain, r
	}
	switch {
	case r < 0x20 || r >= 0x7F && r < 0xA0:
		return classControl, -1
	case r < 0x7F:
		return classPlain, r
	case r >= 0xFF01 && r <= 0xFF5E:
		return classLookalike, r - 0xFEE0
	}
	return classOther, -1
}

// cp1252 names the bytes that a Windows-1252 or Latin-1 file holds where
// UTF-8 text would hold a typographic quote or a no-break space.
var cp1252 = map[byte]rune{
	0x91: 0x2018, 0x92: 0x2019, 0x93: 0x201C, 0x94: 0x201D,
	0x8B: 0x2039, 0x9B: 0x203A, 0xA0: 0x00A0, 0xAB: 0x00AB, 0xBB: 0x00BB,
}
