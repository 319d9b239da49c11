package provkey

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxInput is the most text Check examines. A key is under 400 characters;
// anything this large is the wrong file.
const MaxInput = 64 << 10

// maxPerCode caps how many occurrences of one kind of damage are listed one
// by one; the rest are counted in one more finding.
const maxPerCode = 5

// Severity says whether a finding was repaired safely or makes the text
// unusable as a key.
type Severity int

// Severities, from mild to fatal.
const (
	// Warning: the damage was repaired safely; the normalised key is the
	// key that was meant.
	Warning Severity = iota + 1
	// Error: the text cannot be used as a key until a person fixes it.
	Error
)

func (s Severity) String() string {
	switch s {
	case Warning:
		return "warning"
	case Error:
		return "error"
	}
	return "severity(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText renders "warning" or "error".
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads "warning" or "error".
func (s *Severity) UnmarshalText(b []byte) error {
	switch string(b) {
	case "warning":
		*s = Warning
	case "error":
		*s = Error
	default:
		return fmt.Errorf("severity %q: want warning or error", b)
	}
	return nil
}

// Finding is one problem in pasted key text. It never holds the key itself:
// at most one offending character and its position.
type Finding struct {
	Severity Severity `json:"severity"`
	// Code is stable, for scripts and tests ("curly_quote", "checksum").
	Code string `json:"code"`
	// Line and Column locate the problem in the text as given, from 1;
	// columns count characters (an invalid byte counts as one). Zero when the
	// problem has no single place.
	Line   int `json:"line,omitempty"`
	Column int `json:"column,omitempty"`
	// CodePoint and CharName identify the offending character ("U+201C",
	// "LEFT DOUBLE QUOTATION MARK"); for a byte that is not UTF-8,
	// CodePoint is empty and CharName reads "byte 0xE2".
	CodePoint string `json:"code_point,omitempty"`
	CharName  string `json:"char_name,omitempty"`
	// Message says what is wrong; Fix says what to do.
	Message string `json:"message"`
	Fix     string `json:"fix"`

	offset int // byte offset, for ordering; -1 when there is no place
	// around: the character is outside the key (a quote or white space
	// around it), so dropping it cannot change the key.
	around bool
}

// Where renders the position and character: "line 1, column 1: U+201C LEFT
// DOUBLE QUOTATION MARK". It is empty when the finding has no place.
func (f Finding) Where() string {
	var b strings.Builder
	if f.Line > 0 {
		fmt.Fprintf(&b, "line %d, column %d", f.Line, f.Column)
	}
	if f.CodePoint != "" || f.CharName != "" {
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString(strings.TrimSpace(f.CodePoint + " " + f.CharName))
	}
	return b.String()
}

// String renders "error: line 1, column 1: U+201C …: message".
func (f Finding) String() string {
	if w := f.Where(); w != "" {
		return f.Severity.String() + ": " + w + ": " + f.Message
	}
	return f.Severity.String() + ": " + f.Message
}

// Result is what Check found in a piece of text.
type Result struct {
	// Findings in the order of their position in the text; findings
	// without a position come last.
	Findings []Finding
	// Parsed reports that the text, with every finding repaired, is a
	// well-formed key with a correct checksum; Key is that key. With errors
	// among the findings, Parsed means "intact once those are fixed by a
	// person": the repair is a diagnosis, not something to apply.
	Parsed bool
	Key    Key
}

// Valid reports whether the text is a usable key: it parsed and every
// finding is a warning. Key.Reveal() is then the normalised key.
func (r Result) Valid() bool { return r.Parsed && r.Count(Error) == 0 }

// Repairable reports whether the key can be written out repaired although
// the text has errors: it parsed, so the checksum proves the key intact,
// and every error is a character around the key, outside it — typographic
// quotes or white space wrapped around the whole key — which a person would
// remove the same way. Key.Reveal() is then the repaired key. Errors inside
// the key are never repaired.
func (r Result) Repairable() bool {
	if !r.Parsed {
		return false
	}
	for _, f := range r.Findings {
		if f.Severity == Error && !f.around {
			return false
		}
	}
	return true
}

// Count returns how many findings have severity s.
func (r Result) Count(s Severity) int {
	n := 0
	for _, f := range r.Findings {
		if f.Severity == s {
			n++
		}
	}
	return n
}

// tok is one character of the input, with what it stands in for.
type tok struct {
	r        rune // effective ASCII character; -1 when dropped
	orig     rune // character as given; utf8.RuneError for an invalid byte
	bad      byte // the invalid byte, when orig is RuneError and size 1
	class    charClass
	off      int
	idx      int // index in the input's characters
	line     int
	col      int
	reported bool // a finding already points at this character
}

type checker struct {
	findings []Finding
	perCode  map[string]int // occurrences of each code
	all      []tok
	extra    map[string]*Finding
}

func (c *checker) add(f Finding) { c.findings = append(c.findings, f) }

// markAround marks the findings at t as lying outside the key, when they
// are of a kind that is harmless there.
func (c *checker) markAround(t *tok) {
	for i := range c.findings {
		f := &c.findings[i]
		switch f.Code {
		case "curly_quote", "fullwidth_quote", "surrounding_whitespace", "tab":
			if f.offset == t.off && f.Line == t.line && f.Column == t.col {
				f.around = true
			}
		}
	}
}

func (c *checker) at(sev Severity, code string, t *tok, msg, fix string) {
	if t != nil {
		t.reported = true
	}
	c.perCode[code]++
	if n := c.perCode[code]; n > maxPerCode {
		if e := c.extra[code]; e != nil {
			e.Message = fmt.Sprintf("%d more of the same kind (listed above), the last at line %d, column %d", n-maxPerCode, t.line, t.col)
			return
		}
		c.extra[code] = &Finding{Severity: sev, Code: code, offset: 1 << 30, Fix: fix,
			Message: fmt.Sprintf("1 more of the same kind (listed above), at line %d, column %d", t.line, t.col)}
		return
	}
	f := Finding{Severity: sev, Code: code, Message: msg, Fix: fix, offset: -1}
	if t != nil {
		f.Line, f.Column, f.offset = t.line, t.col, t.off
		if t.orig == utf8.RuneError && t.bad != 0 {
			f.CharName = fmt.Sprintf("byte 0x%02X", t.bad)
			if r, ok := cp1252[t.bad]; ok {
				f.CharName += " (" + charName(r) + " in Windows-1252)"
			}
		} else {
			f.CodePoint, f.CharName = codePoint(t.orig), charName(t.orig)
		}
	}
	c.add(f)
}

// atField reports a problem with a whole field, placed at its first character
// but naming no character.
func (c *checker) atField(sev Severity, code string, t *tok, msg, fix string) {
	f := Finding{Severity: sev, Code: code, Message: msg, Fix: fix, offset: -1}
	if t != nil {
		f.Line, f.Column, f.offset = t.line, t.col, t.off
	}
	c.perCode[code]++
	c.add(f)
}

const (
	fixRecopy = "copy the key again from the control plane as plain text (from a terminal or a plain-text file, not through a word processor, chat or e-mail)"
	fixRetype = "remove the character with a plain-text editor (nano, vi), or copy the key again as plain text"
)

// Check diagnoses text that should be a provisioning key, exactly as it was
// pasted or read from a file: any bytes. It reports every problem it finds,
// repairs the safe ones (straight quotes around the key, one trailing line
// break — LF or CRLF —, spaces and line breaks inside the blob where a
// terminal or e-mail wrapped it) and marks everything else as an error.
//
// Check never returns the key text in a finding. When Result.Valid, the
// normalised key is Result.Key.Reveal().
func Check(raw []byte) Result {
	c := &checker{perCode: map[string]int{}, extra: map[string]*Finding{}}
	res := Result{}
	res.Parsed, res.Key = c.check(raw)
	for _, e := range c.extra {
		c.add(*e)
	}
	sort.SliceStable(c.findings, func(i, j int) bool {
		a, b := c.findings[i].offset, c.findings[j].offset
		if a < 0 {
			a = 1 << 31
		}
		if b < 0 {
			b = 1 << 31
		}
		return a < b
	})
	res.Findings = c.findings
	if res.Findings == nil {
		res.Findings = []Finding{}
	}
	return res
}

func (c *checker) check(raw []byte) (bool, Key) {
	switch {
	case len(bytes.TrimSpace(raw)) == 0:
		c.atField(Error, "empty", nil, "there is no key: the text is empty or only white space",
			"paste the key again. If you wrote the file with echo \"…\" | tee and the quotes were typographic (“ ”), the shell split the key at each '|' and wrote nothing: use straight quotes, or better, 'outpost key check --normalize' to write the file")
		return false, Key{}
	case len(raw) > MaxInput:
		c.atField(Error, "too_long", nil, fmt.Sprintf("the input is larger than %d KiB; a key is about 130 characters", MaxInput>>10),
			"check that this is the key file and not another file")
		return false, Key{}
	case bytes.HasPrefix(raw, []byte{0xFF, 0xFE}) || bytes.HasPrefix(raw, []byte{0xFE, 0xFF}):
		c.atField(Error, "utf16", nil, "the text is UTF-16 (a Windows \"Unicode\" file), not UTF-8",
			"save the file as UTF-8 (Notepad: Save As, Encoding: UTF-8) or convert it: iconv -f UTF-16 -t UTF-8")
		return false, Key{}
	}
	if id, ok := redactedForm(raw); ok {
		c.atField(Error, "redacted", nil, fmt.Sprintf("this is the redacted form of key %s, as outpost prints it in lists and logs: the secret is left out, so it cannot be used", id),
			"print the full key with 'outpost keys reveal NAME', or write it to a file with 'outpost keys download NAME -o FILE'")
		return false, Key{}
	}
	toks, binary := c.scan(raw)
	if binary {
		return false, Key{}
	}
	return c.structure(toks)
}

// redactedRE matches Key.Redacted(): VERSION|HOST|six blob characters, an
// ellipsis and "(redacted, id ID)".
var redactedRE = regexp.MustCompile(`^[0-9]{1,4}\|[^|\s]{1,300}\|[A-Za-z0-9+/]{0,6}…\(redacted, id ([0-9a-f]{16})\)$`)

// redactedForm reports whether raw, without white space or straight quotes
// around it, is a redacted key, and returns its id.
func redactedForm(raw []byte) (string, bool) {
	t := bytes.TrimSpace(raw)
	if len(t) >= 2 && (t[0] == '"' || t[0] == '\'') && t[len(t)-1] == t[0] {
		t = bytes.TrimSpace(t[1 : len(t)-1])
	}
	m := redactedRE.FindSubmatch(t)
	if m == nil {
		return "", false
	}
	return string(m[1]), true
}

// scan decodes raw into characters with positions and reports every
// character that does not belong in a key.
func (c *checker) scan(raw []byte) ([]tok, bool) {
	invalid, nul := 0, bytes.Count(raw, []byte{0})
	toks := make([]tok, 0, len(raw))
	line, col := 1, 1
	for off := 0; off < len(raw); {
		r, size := utf8.DecodeRune(raw[off:])
		t := tok{orig: r, off: off, idx: len(toks), line: line, col: col}
		if r == utf8.RuneError && size == 1 {
			t.bad = raw[off]
			invalid++
		}
		toks = append(toks, t)
		off += size
		col++
		if r == '\n' {
			line, col = line+1, 1
		}
	}
	if nul > 0 || invalid > 8 {
		c.atField(Error, "binary", nil, fmt.Sprintf("this is binary data, not text (%d NUL bytes, %d bytes that are not UTF-8)", nul, invalid),
			"give the file that holds the key (/opt/outpost/var/provision_key on the appliance)")
		return nil, true
	}
	for i := range toks {
		t := &toks[i]
		if t.orig == utf8.RuneError && t.bad != 0 {
			t.r = -1
			c.at(Error, "invalid_utf8", t, "a byte that is not UTF-8: the text was saved in another encoding (such as Latin-1 or Windows-1252) or a character was cut in half",
				"save the key as UTF-8 plain text, or copy it again as plain text")
			continue
		}
		t.class, t.r = classify(t.orig)
		switch t.class {
		case classQuote:
			c.at(Error, "curly_quote", t, "a typographic quote: a word processor, e-mail or chat tool replaced a straight quote; it is not part of the key",
				"remove the quotes (a key file holds the key alone, without quotes), or "+fixRecopy)
		case classFullQuote:
			c.at(Error, "fullwidth_quote", t, "a fullwidth quote (from an East Asian input method); it is not part of the key",
				"remove the quotes; a key file holds the key alone, without quotes")
		case classNBSP:
			c.at(Error, "nbsp", t, "a no-break space, invisible in most editors: a word processor or web page inserted it",
				fixRetype)
		case classSpace:
			c.at(Error, "unicode_space", t, "a Unicode space that is not an ASCII space: a word processor or web page inserted it",
				fixRetype)
		case classZeroWidth:
			if t.off == 0 && t.orig == 0xFEFF {
				c.at(Error, "bom", t, "a byte order mark (BOM) at the start of the file: the file was saved by a Windows editor as \"UTF-8 with BOM\"",
					"save the file as UTF-8 without BOM, or remove it: sed -i '1s/^\\xEF\\xBB\\xBF//' FILE")
			} else {
				c.at(Error, "zero_width", t, "an invisible zero-width character: a web page, chat tool or word processor inserted it",
					"copy the key again as plain text; invisible characters are easiest to remove by retyping the surrounding characters")
			}
		case classLookalike:
			c.at(Error, "lookalike", t, fmt.Sprintf("a character that looks like '%c' but is not", t.r),
				"replace it with the ASCII character, or copy the key again as plain text")
		case classEllipsis:
			c.at(Error, "ellipsis", t, "an ellipsis (…): this is a shortened or redacted key as outpost prints it in logs, not the key itself",
				"copy the full key from the control plane; the redacted form cannot be used")
		case classControl:
			c.at(Error, "control", t, "a control character: the terminal or editor inserted it (an escape sequence or a stray key press)",
				fixRetype)
		case classOther:
			c.at(Error, "non_ascii", t, "a character outside ASCII; a key is made of ASCII letters, digits and + / = | : . -",
				fixRetype+"; it may look like a Latin letter but is not one")
		}
	}
	// Line breaks: CRLF is a line break; a CR alone is damage.
	for i := range toks {
		t := &toks[i]
		if t.r != '\r' {
			continue
		}
		if i+1 < len(toks) && toks[i+1].r == '\n' {
			t.r = -1 // part of the CRLF line break; the LF stands for both
			continue
		}
		t.r = '\n'
		c.at(Error, "cr", t, "a carriage return (CR) without a line feed: a terminal or an old Mac editor wrote it",
			"remove it: tr -d '\\r' < FILE > FILE.new")
	}
	for i := range toks {
		if toks[i].r == '\t' {
			c.at(Error, "tab", &toks[i], "a tab: an editor or e-mail indented the text; tabs are never part of a key",
				fixRetype)
		}
	}
	return toks, false
}

func isQuote(r rune) bool { return r == '"' || r == '\'' }

func isSpace(r rune) bool { return r == ' ' || r == '\t' || r == '\n' }

// structure checks the key's shape on the characters that remain.
func (c *checker) structure(all []tok) (bool, Key) {
	c.all = all
	var e []*tok
	for i := range all {
		if all[i].r >= 0 {
			e = append(e, &all[i])
		}
	}
	// One trailing line break is what echo and editors write.
	if n := len(e); n > 0 && e[n-1].r == '\n' && !e[n-1].reported && e[n-1].orig == '\n' {
		nl := e[n-1]
		where := nl
		msg := "the text ends with a line break (as echo and editors write it); removed"
		if nl.idx > 0 && all[nl.idx-1].orig == '\r' {
			where = &all[nl.idx-1]
			msg = "the text ends with a Windows line break (CR LF); removed"
		}
		c.at(Warning, "trailing_newline", where, msg, "nothing to do: the line break is not part of the key")
		e = e[:n-1]
	}
	e = c.trimSpace(e)
	if len(e) == 0 {
		c.atField(Error, "empty", nil, "there is no key: only white space and characters that are not part of a key",
			"paste the key again")
		return false, Key{}
	}
	// The whole command line pasted where only the key belongs.
	if w := leadingWord(e); w == "echo" || w == "sudo" || w == "printf" || w == "tee" {
		c.atField(Error, "shell_command", e[0], fmt.Sprintf("the text is a shell command (it starts with %q), not a key", w),
			"keep only the key: the text between the quotes, without the command")
		return false, Key{}
	}
	// Quotes around the key.
	first, last := e[0], e[len(e)-1]
	if len(e) >= 2 && isQuote(first.r) && isQuote(last.r) {
		if first.reported && last.reported && first.class == last.class && (first.class == classQuote || first.class == classFullQuote) {
			// Typographic quotes around the whole key: reported as errors
			// by scan, outside the key all the same.
			c.markAround(first)
			c.markAround(last)
		}
		if !first.reported && !last.reported {
			if first.orig == last.orig {
				c.at(Warning, "surrounding_quotes", first, "the key is wrapped in straight quotes; removed",
					"nothing to do; the quotes are not part of the key, and a key file should hold the key alone")
				last.reported = true
			} else {
				c.at(Error, "stray_quote", first, "the quotes around the key do not match", "remove both quotes")
				last.reported = true
			}
		}
		e = c.trimSpace(e[1 : len(e)-1])
	}
	var rest []*tok
	for _, t := range e {
		if isQuote(t.r) || t.r == '`' {
			if !t.reported {
				c.at(Error, "stray_quote", t, "a quote inside the key or at only one end; quotes are never part of a key",
					"remove it; a key file holds the key alone, without quotes")
			}
			continue
		}
		rest = append(rest, t)
	}
	e = rest
	if len(e) == 0 {
		c.atField(Error, "empty", nil, "there is no key, only quotes", "paste the key again")
		return false, Key{}
	}

	var seps []int
	for i, t := range e {
		if t.r == '|' {
			seps = append(seps, i)
		}
	}
	const layout = "a key reads VERSION|HOST|BLOB, with exactly two '|'"
	switch {
	case len(seps) == 0:
		c.atField(Error, "missing_separator", e[0], "there is no '|': "+layout+"; this may be only part of the key",
			"copy the whole key, from the version number at its start to the end of the blob")
		return false, Key{}
	case len(seps) == 1:
		c.atField(Error, "missing_separator", e[seps[0]], "only one '|' (here): "+layout+"; a field or a '|' was lost",
			"copy the whole key again")
		return false, Key{}
	case len(seps) > 2:
		msg := fmt.Sprintf("%d '|' where a key has two: %s; the key may have been pasted twice or had text added", len(seps), layout)
		c.atField(Error, "extra_separator", e[seps[2]], msg, "keep exactly one copy of the key in the file")
		return false, Key{}
	}
	verT, hostT, blobT := e[:seps[0]], e[seps[0]+1:seps[1]], e[seps[1]+1:]

	// White space: inside the blob it is wrapping; elsewhere it is damage.
	var wrapFirst *tok
	breaks, spaces := 0, 0
	for i, t := range e {
		if !isSpace(t.r) || t.reported {
			continue
		}
		if i > seps[1] {
			if wrapFirst == nil {
				wrapFirst = t
			}
			if t.r == '\n' {
				breaks++
			} else {
				spaces++
			}
			continue
		}
		c.at(Error, "whitespace", t, "white space inside the version or host, or around the first '|'",
			"remove it; the only white space allowed in a key is where a long line was wrapped inside the blob")
	}
	if wrapFirst != nil {
		c.at(Warning, "wrapped", wrapFirst, fmt.Sprintf("the blob was wrapped (%s); removed", wrapSummary(breaks, spaces)),
			"nothing to do; the wrapping is not part of the key")
	}
	version := fieldText(verT)
	host := fieldText(hostT)
	ok := true
	if c.lostBetween(e[0].idx, e[seps[1]].idx) {
		// A character that was dropped may have replaced one of the
		// version or host: what remains says nothing more.
		return false, Key{}
	}

	v, err := strconv.Atoi(version)
	switch {
	case version == "":
		c.atField(Error, "bad_version", e[seps[0]], "the version is missing: the key starts with '|'", "copy the whole key again, starting at the version number")
		ok = false
	case len(version) > 16: // the blob, most likely: never repeat it
		c.atField(Error, "bad_version", firstOf(verT, e[0]), fmt.Sprintf("the version field is %d characters long, not a number: the fields are in the wrong order", len(verT)),
			"copy the whole key again; it reads VERSION|HOST|BLOB and starts with a number")
		return false, Key{}
	case len(version) > 4:
		c.atField(Error, "bad_version", firstOf(verT, e[0]), fmt.Sprintf("the version field is %d characters long, not a number: text precedes the key", len(verT)),
			"copy the whole key again; it starts with a number and '|'")
		ok = false
	case err != nil || version != strconv.Itoa(v) || v < 0:
		c.atField(Error, "bad_version", firstOf(verT, e[0]), fmt.Sprintf("the version %q is not a number", version), "copy the whole key again; it starts with a number and '|'")
		ok = false
	case v > Version:
		c.atField(Error, "unknown_version", firstOf(verT, e[0]), fmt.Sprintf("key format version %d: this outpost reads version %d (a key from a newer control plane, or from another product)", v, Version),
			"upgrade outpost, or use a key made by this outpost control plane")
		ok = false
	case v != Version:
		c.atField(Error, "unknown_version", firstOf(verT, e[0]), fmt.Sprintf("key format version %d: outpost keys start at version 1 and this outpost reads version %d; no outpost control plane makes version-%d keys (a key from another product?)", v, Version, v),
			"use a key made by the outpost control plane")
		ok = false
	}
	if p := hostProblem(host); p != "" {
		at := firstOf(hostT, e[seps[0]])
		for _, t := range hostT {
			if !strings.ContainsRune("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]", t.r) {
				at = t
				break
			}
		}
		// The field is not repeated: when fields are out of order it holds
		// the blob, a secret.
		msg := "the host field is not a host name or address: " + p
		switch {
		case strings.Contains(host, "://"):
			msg = "the host field holds a URL; a key holds only HOST or HOST:PORT"
		case len(host) > 90 && len(host) >= len(fieldText(blobT)):
			msg = fmt.Sprintf("the host field is %d characters long: the fields are in the wrong order (a key reads VERSION|HOST|BLOB)", len(hostT))
			c.atField(Error, "bad_host", firstOf(hostT, e[seps[0]]), msg, fixRecopy)
			return false, Key{}
		}
		c.atField(Error, "bad_host", at, msg,
			"copy the key again; the host is part of the key and cannot be edited (the checksum covers it)")
		ok = false
	}

	raw, body, blobOK := c.blob(blobT, e[seps[1]])
	if !blobOK {
		return false, Key{}
	}
	if ok {
		sum := checksum(version+"|"+host+"|", raw[:blobLen-checksumLen])
		if int(raw[0]) != v || !bytes.Equal(sum[:], raw[blobLen-checksumLen:]) {
			c.atField(Error, "checksum", blobT[0], "the checksum does not match: a character of the blob or of the host was changed (mistyped, misread, or edited by hand)",
				fixRecopy)
			return false, Key{}
		}
	}
	k, perr := Parse(version + "|" + host + "|" + body)
	if perr != nil {
		if ok {
			// Parse's message may repeat the host; name only the kind.
			msg := "the key does not parse"
			for _, kind := range []error{ErrFormat, ErrVersion, ErrChecksum} {
				if errors.Is(perr, kind) {
					msg += ": " + kind.Error()
				}
			}
			c.atField(Error, "invalid", e[0], msg, fixRecopy)
		}
		return false, Key{}
	}
	return true, k
}

// blob checks the base64 blob and its checksum. It returns the repaired blob
// text and whether it is intact once repaired.
func (c *checker) blob(blobT []*tok, sep *tok) ([]byte, string, bool) {
	var data []rune
	var dataT []*tok
	var urlSafe *tok
	urlCount := 0
	broken := false // a character may have replaced a blob character
	var pads []*tok
	for _, t := range blobT {
		if isSpace(t.r) {
			continue
		}
		r := t.r
		switch {
		case r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '+' || r == '/':
		case r == '-' || r == '_':
			if t.class == classLookalike {
				broken = true
				continue
			}
			urlCount++
			if urlSafe == nil {
				urlSafe = t
			}
			if r == '-' {
				r = '+'
			} else {
				r = '/'
			}
		case r == '=':
			pads = append(pads, t)
			continue
		default:
			if !t.reported {
				c.at(Error, "bad_base64", t, "a character that is not in the base64 alphabet of the blob (A–Z a–z 0–9 + / and = at the end)",
					fixRecopy)
			}
			broken = true
			continue
		}
		if len(pads) > 0 {
			c.at(Error, "bad_padding", pads[0], "'=' inside the blob: only its end may hold '='; text follows the key, or two keys were pasted together",
				"keep exactly one copy of the key; copy it again")
			pads = nil
			broken = true
		}
		data = append(data, r)
		dataT = append(dataT, t)
	}
	if len(blobT) > 0 && c.lostBetween(sep.idx, blobT[len(blobT)-1].idx) {
		broken = true
	}
	if urlSafe != nil {
		c.at(Error, "url_safe_base64", urlSafe, fmt.Sprintf("the blob uses the URL-safe base64 alphabet ('-' and '_', %d in all) instead of the standard one ('+' and '/'): a tool converted it", urlCount),
			fixRecopy)
	}
	if len(data) == 0 {
		c.atField(Error, "truncated", sep, "the blob is missing: the key ends after the host", "copy the whole key again; it ends with the blob, a long run of letters and digits ending in '='")
		return nil, "", false
	}
	if broken {
		return nil, "", false
	}
	want := base64.StdEncoding.EncodedLen(blobLen)
	padWant := (4 - len(data)%4) % 4
	end := dataT[len(dataT)-1]
	if len(data)+padWant < want || len(data)%4 == 1 {
		c.atField(Error, "truncated", end, fmt.Sprintf("the blob is %d characters, want %d: the end of the key was cut off", len(data)+len(pads), want),
			"copy the whole key again; make sure the selection reaches the last character (a key ends with '=')")
		return nil, "", false
	}
	if len(data)+padWant > want {
		c.atField(Error, "extra_data", dataT[want-1], fmt.Sprintf("the blob is %d characters, want %d: text was added after the key (from here on)", len(data)+len(pads), want),
			"remove what follows the key, or copy the key again")
		return nil, "", false
	}
	raw, err := base64.RawStdEncoding.DecodeString(string(data))
	if err != nil || len(raw) != blobLen {
		c.atField(Error, "truncated", end, "the blob does not decode to a key", fixRecopy)
		return nil, "", false
	}
	switch {
	case len(pads) < padWant:
		c.atField(Error, "bad_padding", end, fmt.Sprintf("the blob ends without its final '=' (%d missing): a double-click selection often leaves it out", padWant-len(pads)),
			"copy the whole key again, including the '=' at its end")
	case len(pads) > padWant:
		c.at(Error, "bad_padding", pads[padWant], fmt.Sprintf("the blob ends with %d '=', want %d", len(pads), padWant),
			"remove the extra '=', or copy the key again")
	}
	return raw, base64.StdEncoding.EncodeToString(raw), true
}

func firstOf(ts []*tok, def *tok) *tok {
	if len(ts) > 0 {
		return ts[0]
	}
	return def
}

// fieldText returns the characters of a field without white space.
func fieldText(ts []*tok) string {
	var b strings.Builder
	for _, t := range ts {
		if !isSpace(t.r) {
			b.WriteRune(t.r)
		}
	}
	return b.String()
}

// trimSpace removes white space at both ends, reporting what was not already
// reported.
func (c *checker) trimSpace(e []*tok) []*tok {
	i, j := 0, len(e)
	for i < j && isSpace(e[i].r) {
		i++
	}
	for j > i && isSpace(e[j-1].r) {
		j--
	}
	for _, side := range [][]*tok{e[:i], e[j:]} {
		for _, t := range side {
			if !t.reported {
				c.at(Error, "surrounding_whitespace", t, "white space before or after the key (beyond one final line break)",
					"remove the spaces and blank lines around the key")
				c.markAround(t)
				break
			}
		}
		for _, t := range side {
			if t.r == '\t' {
				c.markAround(t)
			}
		}
	}
	return e[i:j]
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

func wrapSummary(breaks, spaces int) string {
	switch {
	case breaks == 0:
		return plural(spaces, "space")
	case spaces == 0:
		return plural(breaks, "line break")
	}
	return plural(breaks, "line break") + " and " + plural(spaces, "space")
}

// lostBetween reports whether the input's characters from index from up to
// to held one that was dropped and may have replaced a character of the key
// (rather than been inserted, as invisible characters and quotes are).
func (c *checker) lostBetween(from, to int) bool {
	for _, t := range c.all[max(from, 0):min(to, len(c.all))] {
		if t.r < 0 && (t.class == classOther || t.orig == utf8.RuneError && t.bad != 0) {
			return true
		}
	}
	return false
}

// leadingWord returns the first word of e when white space follows it.
func leadingWord(e []*tok) string {
	var b strings.Builder
	for _, t := range e {
		if isSpace(t.r) {
			return b.String()
		}
		if b.Len() > 8 {
			break
		}
		b.WriteRune(t.r)
	}
	return ""
}
