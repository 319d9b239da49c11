package provkey

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"
)

var update = flag.Bool("update", false, "rewrite testdata/corpus from the case table")

// testKey is the key every corpus file is made from: the same bytes on every
// run, so the corpus is reproducible. Seed 4 gives a blob holding both '+'
// and '/', which the URL-safe case needs.
func testKey(t testing.TB) Key {
	t.Helper()
	k, err := Generate("api.example.com", sha256.Sum256([]byte("outpost test CA")), rand.NewChaCha8([32]byte{4}))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// corpusCase is one way a key gets damaged on its way to an appliance.
type corpusCase struct {
	name   string
	text   func(key, prefix, blob string) string
	codes  []string // finding codes, in order
	valid  bool
	parsed bool // the intended key is recognised once the findings are fixed
	// repairable: errors only around the key (typographic quotes, white
	// space); --normalize writes the key.
	repairable bool
	noFile     bool // too big to keep in testdata
}

func mustParse(text string) Key {
	k, err := Parse(text)
	if err != nil {
		panic(err)
	}
	return k
}

func ins(s string, i int, x string) string { return s[:i] + x + s[i:] }

func wrapEvery(s string, n int, nl string) string {
	var b strings.Builder
	for len(s) > n {
		b.WriteString(s[:n] + nl)
		s = s[n:]
	}
	b.WriteString(s)
	return b.String()
}

func same(k string) func(string, string, string) string {
	return func(key, _, _ string) string { return strings.ReplaceAll(k, "K", key) }
}

func corpus() []corpusCase {
	cs := []corpusCase{
		{name: "clean", text: same("K"), valid: true, parsed: true},
		// sudo echo "KEY" | sudo tee FILE with straight quotes: the shell
		// removes the quotes, echo adds a line break.
		{name: "console_echo_straight_quotes", text: same("K\n"), codes: []string{"trailing_newline"}, valid: true, parsed: true},
		// The same with typographic quotes: they do not quote, so the shell
		// splits the command at each '|' and tee writes nothing.
		{name: "console_echo_typographic_quotes", text: same(""), codes: []string{"empty"}},
		// The whole command pasted into the key file or the OVF property.
		{name: "whole_command_pasted", text: same("sudo echo \"K\" | sudo tee /opt/outpost/var/provision_key\n"), codes: []string{"shell_command", "trailing_newline"}},
		// Windows: cmd's echo "KEY" > FILE keeps the quotes and the space
		// before '>'; PowerShell 5's echo "KEY" > FILE writes UTF-16.
		{name: "windows_cmd_echo", text: same("\"K\" \r\n"), codes: []string{"surrounding_quotes", "surrounding_whitespace", "trailing_newline"}, parsed: true, repairable: true},
		{name: "powershell_echo", text: func(k, _, _ string) string { return utf16le("\ufeff" + k + "\r\n") }, codes: []string{"utf16"}},
		// Pasted into nano/vi from a document or e-mail.
		{name: "editor_paste_curly_double", text: same("“K”\n"), codes: []string{"curly_quote", "curly_quote", "trailing_newline"}, parsed: true, repairable: true},
		{name: "editor_paste_curly_single", text: same("‘K’\n"), codes: []string{"curly_quote", "curly_quote", "trailing_newline"}, parsed: true, repairable: true},
		{name: "german_low9_quotes", text: same("„K“"), codes: []string{"curly_quote", "curly_quote"}, parsed: true, repairable: true},
		{name: "single_low9_reversed9", text: same("‚K‛"), codes: []string{"curly_quote", "curly_quote"}, parsed: true, repairable: true},
		{name: "double_reversed9", text: same("‟K”"), codes: []string{"curly_quote", "curly_quote"}, parsed: true, repairable: true},
		{name: "primes", text: same("′K″"), codes: []string{"curly_quote", "curly_quote"}, parsed: true, repairable: true},
		{name: "guillemets", text: same("«K»"), codes: []string{"curly_quote", "curly_quote"}, parsed: true, repairable: true},
		{name: "french_guillemets_narrow_nbsp", text: same("«\u202fK\u202f»"), codes: []string{"curly_quote", "nbsp", "nbsp", "curly_quote"}, parsed: true},
		{name: "fullwidth_double_quotes", text: same("＂K＂"), codes: []string{"fullwidth_quote", "fullwidth_quote"}, parsed: true, repairable: true},
		{name: "fullwidth_single_quotes", text: same("＇K＇\n"), codes: []string{"fullwidth_quote", "fullwidth_quote", "trailing_newline"}, parsed: true, repairable: true},
		{name: "curly_quote_inside_blob", text: func(k, _, _ string) string { return ins(k, 60, "”") }, codes: []string{"curly_quote"}, parsed: true},
		// Straight quotes typed into the file by hand.
		{name: "straight_quotes_in_file", text: same("\"K\"\n"), codes: []string{"surrounding_quotes", "trailing_newline"}, valid: true, parsed: true},
		{name: "straight_single_quotes", text: same("'K'"), codes: []string{"surrounding_quotes"}, valid: true, parsed: true},
		{name: "unbalanced_quote", text: same("\"K\n"), codes: []string{"stray_quote", "trailing_newline"}, parsed: true},
		{name: "mismatched_quotes", text: same("\"K'"), codes: []string{"stray_quote"}, parsed: true},
		// Invisible characters.
		{name: "nbsp_in_blob", text: func(k, _, _ string) string { return ins(k, 60, "\u00a0") }, codes: []string{"nbsp"}, parsed: true},
		{name: "nbsp_after_version", text: func(k, _, _ string) string { return ins(k, 1, "\u00a0") }, codes: []string{"nbsp"}, parsed: true},
		{name: "ideographic_space", text: func(k, _, _ string) string { return ins(k, 90, "\u3000") }, codes: []string{"unicode_space"}, parsed: true},
		{name: "zero_width_in_host", text: func(k, _, _ string) string { return ins(k, 7, "\u200b") }, codes: []string{"zero_width"}, parsed: true},
		{name: "bom", text: same("\ufeffK\n"), codes: []string{"bom", "trailing_newline"}, parsed: true},
		{name: "notepad_bom_crlf", text: same("\ufeffK\r\n"), codes: []string{"bom", "trailing_newline"}, parsed: true},
		{name: "feff_inside", text: func(k, _, _ string) string { return ins(k, 40, "\ufeff") }, codes: []string{"zero_width"}, parsed: true},
		// Line endings and tabs.
		{name: "crlf", text: same("K\r\n"), codes: []string{"trailing_newline"}, valid: true, parsed: true},
		{name: "lone_cr", text: same("K\r"), codes: []string{"cr"}, parsed: true},
		{name: "cr_inside_blob", text: func(k, _, _ string) string { return ins(k, 60, "\r") }, codes: []string{"cr"}, parsed: true},
		{name: "tab_before", text: same("\tK\n"), codes: []string{"tab", "trailing_newline"}, parsed: true, repairable: true},
		{name: "tab_in_blob", text: func(k, _, _ string) string { return ins(k, 60, "\t") }, codes: []string{"tab"}, parsed: true},
		{name: "leading_spaces", text: same("  K"), codes: []string{"surrounding_whitespace"}, parsed: true, repairable: true},
		{name: "trailing_spaces", text: same("K  \n"), codes: []string{"surrounding_whitespace", "trailing_newline"}, parsed: true, repairable: true},
		{name: "blank_line_after", text: same("K\n\n"), codes: []string{"surrounding_whitespace", "trailing_newline"}, parsed: true, repairable: true},
		// Wrapping by terminals and e-mail.
		{name: "wrapped_80_lf", text: func(k, _, _ string) string { return wrapEvery(k, 80, "\n") + "\n" }, codes: []string{"wrapped", "trailing_newline"}, valid: true, parsed: true},
		{name: "wrapped_40_crlf", text: func(k, _, _ string) string { return wrapEvery(k, 40, "\r\n") + "\r\n" }, codes: []string{"wrapped", "trailing_newline"}, valid: true, parsed: true},
		{name: "wrapped_terminal_space", text: func(k, _, _ string) string { return ins(k, 64, " ") }, codes: []string{"wrapped"}, valid: true, parsed: true},
		{name: "wrapped_email_indent", text: func(k, _, _ string) string { return ins(k, 76, "\n    ") + "\n" }, codes: []string{"wrapped", "trailing_newline"}, valid: true, parsed: true},
		{name: "wrapped_in_host", text: func(k, _, _ string) string { return ins(k, 9, "\n") }, codes: []string{"whitespace"}, parsed: true},
		{name: "spaces_around_separators", text: func(_, _, b string) string { return "1 | api.example.com | " + b }, codes: []string{"whitespace", "whitespace", "whitespace", "wrapped"}, parsed: true},
		// Structure.
		{name: "missing_first_separator", text: func(_, _, b string) string { return "1api.example.com|" + b }, codes: []string{"missing_separator"}},
		{name: "missing_second_separator", text: func(_, _, b string) string { return "1|api.example.com" + b }, codes: []string{"missing_separator"}},
		{name: "blob_only", text: func(_, _, b string) string { return b + "\n" }, codes: []string{"missing_separator", "trailing_newline"}},
		{name: "extra_trailing_separator", text: same("K|"), codes: []string{"extra_separator"}},
		{name: "double_separator", text: func(_, _, b string) string { return "1||api.example.com|" + b }, codes: []string{"extra_separator"}},
		{name: "pasted_twice", text: same("K\nK\n"), codes: []string{"extra_separator", "trailing_newline"}},
		{name: "fields_swapped_blob_first", text: func(_, _, b string) string { return b + "|api.example.com|1" }, codes: []string{"bad_version"}},
		{name: "fields_swapped_blob_second", text: func(_, _, b string) string { return "1|" + b + "|api.example.com" }, codes: []string{"bad_host"}},
		{name: "unknown_version", text: func(_, _, b string) string { return "3|api.example.com|" + b }, codes: []string{"unknown_version"}},
		{name: "version_zero", text: func(_, _, b string) string { return "0|api.example.com|" + b }, codes: []string{"unknown_version"}},
		// The redacted form (keys list, logs) pasted instead of the key.
		{name: "redacted_form", text: func(k, _, _ string) string { return mustParse(k).Redacted() + "\n" }, codes: []string{"redacted"}},
		{name: "redacted_form_quoted", text: func(k, _, _ string) string { return "\"" + mustParse(k).Redacted() + "\"" }, codes: []string{"redacted"}},
		{name: "spaces_around", text: same("  K  \n"), codes: []string{"surrounding_whitespace", "surrounding_whitespace", "trailing_newline"}, parsed: true, repairable: true},
		{name: "curly_quotes_and_spaces", text: same(" “K” "), codes: []string{"surrounding_whitespace", "curly_quote", "curly_quote", "surrounding_whitespace"}, parsed: true, repairable: true},
		{name: "curly_quote_inside", text: func(k, p, b string) string { return p + b[:10] + "”" + b[10:] }, codes: []string{"curly_quote"}, parsed: true},
		{name: "version_not_number", text: func(_, _, b string) string { return "v1|api.example.com|" + b }, codes: []string{"bad_version"}},
		{name: "missing_version", text: func(_, _, b string) string { return "|api.example.com|" + b }, codes: []string{"bad_version"}},
		{name: "host_underscore", text: func(_, _, b string) string { return "1|api_example.com|" + b }, codes: []string{"bad_host"}},
		{name: "host_is_url", text: func(_, _, b string) string { return "1|https://api.example.com|" + b }, codes: []string{"bad_host"}},
		{name: "host_bad_port", text: func(_, _, b string) string { return "1|api.example.com:99999|" + b }, codes: []string{"bad_host"}},
		{name: "host_edited", text: func(_, _, b string) string { return "1|api.example.org|" + b }, codes: []string{"checksum"}},
		{name: "host_port_added", text: func(_, _, b string) string { return "1|api.example.com:443|" + b }, codes: []string{"checksum"}},
		{name: "fullwidth_separator", text: func(_, _, b string) string { return "1｜api.example.com|" + b }, codes: []string{"lookalike"}, parsed: true},
		// The blob.
		{name: "bad_base64_char", text: func(_, p, b string) string { return p + b[:30] + "!" + b[31:] }, codes: []string{"bad_base64"}},
		{name: "bad_base64_dot", text: func(_, p, b string) string { return p + b[:50] + "." + b[51:] }, codes: []string{"bad_base64"}},
		{name: "url_safe_alphabet", text: func(_, p, b string) string {
			return p + strings.NewReplacer("+", "-", "/", "_").Replace(b)
		}, codes: []string{"url_safe_base64"}, parsed: true},
		{name: "missing_padding", text: func(k, _, _ string) string { return k[:len(k)-1] }, codes: []string{"bad_padding"}, parsed: true},
		{name: "missing_padding_newline", text: func(k, _, _ string) string { return k[:len(k)-1] + "\n" }, codes: []string{"bad_padding", "trailing_newline"}, parsed: true},
		{name: "extra_padding", text: same("K="), codes: []string{"bad_padding"}, parsed: true},
		{name: "padding_inside", text: func(k, _, _ string) string { return ins(k, 60, "=") }, codes: []string{"bad_padding"}},
		{name: "truncated_end", text: func(k, _, _ string) string { return k[:len(k)-20] }, codes: []string{"truncated"}},
		{name: "truncated_half", text: func(k, _, _ string) string { return k[:70] + "\n" }, codes: []string{"truncated", "trailing_newline"}},
		{name: "truncated_after_host", text: func(_, p, _ string) string { return p }, codes: []string{"truncated"}},
		{name: "extra_data", text: func(k, _, _ string) string { return k[:len(k)-1] + "QUJD" }, codes: []string{"extra_data"}},
		{name: "altered_char", text: func(_, p, b string) string { return p + b[:50] + flip(b[50]) + b[51:] }, codes: []string{"checksum"}},
		{name: "ocr_case_swap", text: func(_, p, b string) string {
			i := strings.IndexAny(b[10:], "abcdefghijklmnopqrstuvwxyz") + 10
			return p + b[:i] + strings.ToUpper(b[i:i+1]) + b[i+1:]
		}, codes: []string{"checksum"}},
		{name: "ellipsis_shortened", text: func(k, _, _ string) string { return k[:60] + "…" }, codes: []string{"truncated", "ellipsis"}},
		// Encodings.
		{name: "windows1252_quotes", text: same("\x93K\x94\r\n"), codes: []string{"invalid_utf8", "invalid_utf8", "trailing_newline"}, parsed: true},
		{name: "latin1_nbsp_in_blob", text: func(k, _, _ string) string { return ins(k, 60, "\xa0") }, codes: []string{"invalid_utf8"}},
		{name: "cyrillic_letter_in_blob", text: func(_, p, b string) string {
			i := strings.IndexByte(b, 'A')
			return p + b[:i] + "А" + b[i+1:]
		}, codes: []string{"non_ascii"}},
		{name: "cyrillic_letter_in_host", text: func(_, _, b string) string { return "1|аpi.example.com|" + b }, codes: []string{"non_ascii"}},
		{name: "utf16le_notepad", text: func(k, _, _ string) string { return utf16le("\ufeff" + k) }, codes: []string{"utf16"}},
		{name: "binary", text: same("\x7fELF\x02\x01\x01\x00\x00\x00\x00K"), codes: []string{"binary"}},
		{name: "empty_line", text: same("\n"), codes: []string{"empty"}},
		{name: "only_spaces", text: same("   \r\n"), codes: []string{"empty"}},
		{name: "only_quotes", text: same("\"\"\n"), codes: []string{"surrounding_quotes", "trailing_newline", "empty"}},
		{name: "too_long", text: func(string, string, string) string { return strings.Repeat("A", MaxInput+1) }, codes: []string{"too_long"}, noFile: true},
		// A terminal's bracketed-paste markers, written when paste mode leaks.
		{name: "bracketed_paste_markers", text: same("\x1b[200~K\x1b[201~\n"), codes: []string{"control", "bad_version", "bad_padding", "control", "bad_base64", "bad_base64", "trailing_newline"}},
	}
	for _, r := range []rune{0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2008, 0x2009, 0x200a} {
		cs = append(cs, corpusCase{name: "space_" + codePoint(r), text: func(k, _, _ string) string { return ins(k, 60, string(r)) }, codes: []string{"unicode_space"}, parsed: true})
	}
	cs = append(cs, corpusCase{name: "space_U+2007", text: func(k, _, _ string) string { return ins(k, 60, "\u2007") }, codes: []string{"nbsp"}, parsed: true})
	for _, r := range []rune{0x200b, 0x200c, 0x200d, 0x2060} {
		cs = append(cs, corpusCase{name: "zero_width_" + codePoint(r), text: func(k, _, _ string) string { return ins(k, 60, string(r)) }, codes: []string{"zero_width"}, parsed: true})
	}
	for _, r := range []rune{0x2018, 0x2019, 0x201A, 0x201B, 0x201C, 0x201D, 0x201E, 0x201F, 0x2032, 0x2033, 0x00AB, 0x00BB} {
		q := string(r)
		cs = append(cs, corpusCase{name: "quotes_" + codePoint(r), text: func(k, _, _ string) string { return q + k + q + "\n" }, codes: []string{"curly_quote", "curly_quote", "trailing_newline"}, parsed: true, repairable: true})
	}
	return cs
}

func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

func utf16le(s string) string {
	var b bytes.Buffer
	for _, u := range utf16.Encode([]rune(s)) {
		binary.Write(&b, binary.LittleEndian, u)
	}
	return b.String()
}

func splitKey(t testing.TB, k Key) (text, prefix, blob string) {
	text = k.Reveal()
	i := strings.LastIndexByte(text, '|') + 1
	return text, text[:i], text[i:]
}

// TestCorpus checks every damaged key of the corpus, and that the files in
// testdata/corpus are what the table makes (go test -update rewrites them).
func TestCorpus(t *testing.T) {
	k := testKey(t)
	text, prefix, blob := splitKey(t, k)
	dir := filepath.Join("testdata", "corpus")
	if *update {
		os.RemoveAll(dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for _, tc := range corpus() {
		t.Run(tc.name, func(t *testing.T) {
			if seen[tc.name] {
				t.Fatalf("duplicate case name")
			}
			seen[tc.name] = true
			in := []byte(tc.text(text, prefix, blob))
			if !tc.noFile {
				file := filepath.Join(dir, tc.name+".txt")
				if *update {
					if err := os.WriteFile(file, in, 0o644); err != nil {
						t.Fatal(err)
					}
				} else if got, err := os.ReadFile(file); err != nil || !bytes.Equal(got, in) {
					t.Errorf("%s differs from the case table (err %v); run go test ./provkey -update", file, err)
				}
			}
			res := Check(in)
			var codes []string
			for _, f := range res.Findings {
				codes = append(codes, f.Code)
			}
			if !reflect.DeepEqual(codes, tc.codes) {
				t.Errorf("codes = %q, want %q", codes, tc.codes)
				for _, f := range res.Findings {
					t.Logf("  %s", f)
				}
			}
			if res.Repairable() != (tc.repairable || tc.valid) {
				t.Errorf("Repairable() = %v, want %v", res.Repairable(), tc.repairable || tc.valid)
			}
			if res.Valid() != tc.valid || res.Parsed != tc.parsed {
				t.Errorf("Valid() = %v, Parsed = %v; want %v, %v", res.Valid(), res.Parsed, tc.valid, tc.parsed)
			}
			if res.Parsed && res.Key != k {
				t.Errorf("parsed key %v, want %v", res.Key, k)
			}
			if res.Valid() && res.Key.Reveal() != text {
				t.Errorf("normalised key differs from the original")
			}
			for _, f := range res.Findings {
				checkFinding(t, f, blob)
			}
		})
	}
}

// checkFinding asserts what every finding owes its reader: a place for a
// character, a message and a fix, and no part of the secret.
func checkFinding(t *testing.T, f Finding, blob string) {
	t.Helper()
	if f.Message == "" || f.Fix == "" || f.Code == "" {
		t.Errorf("finding %+v lacks a code, message or fix", f)
	}
	if f.Severity != Warning && f.Severity != Error {
		t.Errorf("finding %+v has no severity", f)
	}
	if f.CodePoint != "" && (f.Line < 1 || f.Column < 1 || f.CharName == "") {
		t.Errorf("finding %+v names a character but not where", f)
	}
	all := f.String() + f.Fix
	if leaked := leak(all, blob); leaked != "" {
		t.Errorf("finding %q contains %q from the blob", all, leaked)
	}
}

// leak returns a run of 8 characters of blob that appears in s.
func leak(s, blob string) string {
	for i := 0; i+8 <= len(blob); i++ {
		if strings.Contains(s, blob[i:i+8]) {
			return blob[i : i+8]
		}
	}
	return ""
}

func TestCheckPositions(t *testing.T) {
	k := testKey(t).Reveal()
	for _, tc := range []struct {
		in        string
		want      string
		line, col int
	}{
		{"“" + k + "”", "U+201C LEFT DOUBLE QUOTATION MARK", 1, 1},
		{k[:60] + "\u00a0" + k[60:], "U+00A0 NO-BREAK SPACE", 1, 61},
		{k[:60] + "\n" + k[60:90] + "\u200b" + k[90:], "U+200B ZERO WIDTH SPACE", 2, 31},
		{"\ufeff" + k, "U+FEFF ZERO WIDTH NO-BREAK SPACE", 1, 1},
		{"＂" + k + "＂", "U+FF02 FULLWIDTH QUOTATION MARK", 1, 1},
		{"\x93" + k, "byte 0x93 (LEFT DOUBLE QUOTATION MARK in Windows-1252)", 1, 1},
		{"1|api.example.com|" + "é" + k[18:], "U+00E9 (Latin character)", 1, 19},
	} {
		res := Check([]byte(tc.in))
		if len(res.Findings) == 0 {
			t.Errorf("%q: no findings", tc.want)
			continue
		}
		f := res.Findings[0]
		for _, g := range res.Findings {
			if g.Severity == Error {
				f = g
				break
			}
		}
		got := strings.TrimSpace(f.CodePoint + " " + f.CharName)
		if got != tc.want || f.Line != tc.line || f.Column != tc.col {
			t.Errorf("first finding at line %d, column %d: %s; want line %d, column %d: %s", f.Line, f.Column, got, tc.line, tc.col, tc.want)
		}
		if want := "line " + strconv.Itoa(tc.line) + ", column " + strconv.Itoa(tc.col) + ": " + tc.want; f.Where() != want {
			t.Errorf("Where() = %q, want %q", f.Where(), want)
		}
	}
}

func TestCheckCapsRepeats(t *testing.T) {
	k := testKey(t).Reveal()
	in := strings.Repeat("\u00a0", 40) + k
	res := Check([]byte(in))
	if n := len(res.Findings); n != maxPerCode+1 {
		t.Fatalf("%d findings for 40 no-break spaces, want %d listed and one summary", n, maxPerCode+1)
	}
	last := res.Findings[len(res.Findings)-1]
	if !strings.Contains(last.Message, "35 more") || !strings.Contains(last.Message, "column 40") {
		t.Errorf("summary %q does not count the rest and the last place", last.Message)
	}
}

func TestValidateHost(t *testing.T) {
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"api.example.com", true},
		{"api.example.com:8443", true},
		{"10.0.0.1", true},
		{"[2001:db8::1]:443", true},
		{"[::1]", true},
		{"", false},
		{"api.example.com:", false},
		{"api.example.com:0", false},
		{"api.example.com:65536", false},
		{"api_example.com", false},
		{"-api.example.com", false},
		{"api..example.com", false},
		{"2001:db8::1", false},
		{"[ :]", false},
		{"[10.0.0.1]", false},
		{"[fe80::1%eth0]", false},
		{"[::1]x", false},
		{"[::1", false},
		{strings.Repeat("a", 64) + ".com", false},
	} {
		err := ValidateHost(tc.host)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateHost(%q) = %v, want ok %v", tc.host, err, tc.ok)
		}
	}
}
