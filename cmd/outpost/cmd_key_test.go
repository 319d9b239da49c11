package main

import (
	"github.com/outpost-appliance/outpost/internal/pgtest"

	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/outpost-appliance/outpost/provkey"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// outpostBin is the binary built once by TestMain; the CLI is tested as a
// user runs it.
var outpostBin string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "outpost-cli-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Chmod(dir, 0o755) // the unreadable-file test runs it as another user
	outpostBin = filepath.Join(dir, "outpost")
	build := exec.Command("go", "build", "-o", outpostBin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building outpost:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	pgtest.StopShared()
	os.RemoveAll(dir)
	os.Exit(code)
}

type runResult struct {
	code   int
	stdout string
	stderr string
}

// runOutpost runs the built binary with stdin (a file name, or "" for none).
func runOutpost(t *testing.T, stdin string, args ...string) runResult {
	t.Helper()
	return runAs(t, nil, stdin, args...)
}

func runAs(t *testing.T, cred *syscall.Credential, stdin string, args ...string) runResult {
	t.Helper()
	cmd := exec.Command(outpostBin, args...)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	if stdin != "" {
		f, err := os.Open(stdin)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd.Stdin = f
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	code := 0
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
		if ee.ProcessState.Sys().(syscall.WaitStatus).Signaled() {
			t.Fatalf("outpost %q killed by a signal: %s", args, errb.String())
		}
	case err != nil:
		t.Fatal(err)
	}
	if strings.Contains(errb.String(), "panic:") || strings.Contains(errb.String(), "goroutine ") {
		t.Fatalf("outpost %q panicked:\n%s", args, errb.String())
	}
	return runResult{code, out.String(), errb.String()}
}

const corpusDir = "../../provkey/testdata/corpus"

// corpusBlob is the blob of the key the corpus was made from: the secret
// part that no output may contain.
func corpusBlob(t *testing.T) (key, blob string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(corpusDir, "clean.txt"))
	if err != nil {
		t.Fatal(err)
	}
	key = string(b)
	return key, key[strings.LastIndexByte(key, '|')+1:]
}

// assertNoLeak fails when s holds 8 or more consecutive characters of blob.
func assertNoLeak(t *testing.T, what, s, blob string) {
	t.Helper()
	for i := 0; i+8 <= len(blob); i++ {
		if strings.Contains(s, blob[i:i+8]) {
			t.Errorf("%s contains %q, part of the key's blob", what, blob[i:i+8])
			return
		}
	}
}

// golden compares got with testdata/NAME; -update rewrites the file.
func golden(t *testing.T, name, got string) {
	t.Helper()
	file := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v; run go test ./cmd/outpost -update", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run go test ./cmd/outpost -update and review the diff):\n--- got\n%s\n--- want\n%s", file, got, want)
	}
}

// TestKeyCheckCorpus runs key check on every file of the provkey corpus and
// compares the human output with golden files.
func TestKeyCheckCorpus(t *testing.T) {
	_, blob := corpusBlob(t)
	files, err := filepath.Glob(filepath.Join(corpusDir, "*.txt"))
	if err != nil || len(files) < 50 {
		t.Fatalf("corpus has %d files (%v); run go test ./provkey -update", len(files), err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".txt")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			want := 1
			if provkey.Check(raw).Valid() {
				want = 0
			}
			r := runOutpost(t, "", "key", "check", file)
			if r.code != want {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, want, r.stdout, r.stderr)
			}
			if r.stderr != "" {
				t.Errorf("stderr not empty: %q", r.stderr)
			}
			golden(t, "keycheck/"+name+".golden", fmt.Sprintf("$ outpost key check %s.txt\nexit %d\n%s", name, r.code, r.stdout))
			assertNoLeak(t, "stdout", r.stdout, blob)

			// The same from standard input, as JSON.
			j := runOutpost(t, file, "key", "check", "--json", "-")
			if j.code != want {
				t.Errorf("--json: exit %d, want %d", j.code, want)
			}
			var doc struct {
				Input    string
				Valid    bool
				KeyID    string `json:"key_id"`
				Findings []provkey.Finding
			}
			if err := json.Unmarshal([]byte(j.stdout), &doc); err != nil {
				t.Fatalf("--json output is not JSON: %v\n%s", err, j.stdout)
			}
			if doc.Valid != (want == 0) || doc.Input != "-" || doc.Findings == nil {
				t.Errorf("--json document: valid %v, input %q, findings %v", doc.Valid, doc.Input, doc.Findings)
			}
			if doc.Valid && doc.KeyID == "" {
				t.Errorf("--json: a valid key without key_id")
			}
			assertNoLeak(t, "--json stdout", j.stdout, blob)

			// --normalize prints the key only when every finding was safe,
			// or the only errors are quotes or spaces around an intact key;
			// not to a terminal, without a line break.
			n := runOutpost(t, "", "key", "check", "--normalize", file)
			assertNoLeak(t, "--normalize stderr", n.stderr, blob)
			if res := provkey.Check(raw); res.Repairable() {
				key, _ := corpusBlob(t)
				if n.code != 0 || n.stdout != key {
					t.Errorf("--normalize: exit %d, stdout %d bytes; want 0 and the key alone", n.code, len(n.stdout))
				}
				if !res.Valid() && (!strings.Contains(n.stderr, "normalised: ") || !strings.Contains(n.stderr, "error: line ")) {
					t.Errorf("--normalize of a repairable key: stderr does not list the errors:\n%s", n.stderr)
				}
			} else if n.code != 1 || n.stdout != "" || !strings.Contains(n.stderr, "not normalised") {
				t.Errorf("--normalize of an invalid key: exit %d, %d bytes on stdout, stderr %q", n.code, len(n.stdout), n.stderr)
			}
		})
	}
}

func TestKeyCheckJSONFindings(t *testing.T) {
	r := runOutpost(t, "", "key", "check", "--json", filepath.Join(corpusDir, "editor_paste_curly_double.txt"))
	if r.code != 1 {
		t.Fatalf("exit %d, want 1", r.code)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatal(err)
	}
	fs := doc["findings"].([]any)
	first := fs[0].(map[string]any)
	if first["code"] != "curly_quote" || first["severity"] != "error" || first["line"] != 1.0 || first["column"] != 1.0 ||
		first["code_point"] != "U+201C" || first["char_name"] != "LEFT DOUBLE QUOTATION MARK" {
		t.Errorf("first finding %v", first)
	}
	if doc["valid"] != false || doc["intact"] != true || doc["key_id"] == "" || doc["host"] != "api.example.com" || doc["errors"] != 2.0 || doc["warnings"] != 1.0 {
		t.Errorf("document %v", doc)
	}
}

// TestKeyCheckBadInput: what is not a key file gets a clear message and
// exit 1 or 2, never a panic.
func TestKeyCheckBadInput(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.bin")
	data := make([]byte, 10<<20)
	for i := range data {
		data[i] = byte(i*7 + i>>8)
	}
	if err := os.WriteFile(big, data, 0o644); err != nil {
		t.Fatal(err)
	}
	latin1 := filepath.Join(dir, "latin1.txt")
	key, _ := corpusBlob(t)
	os.WriteFile(latin1, []byte("\xab"+key+"\xbb\n"), 0o644)
	smallBin := filepath.Join(dir, "small.bin")
	os.WriteFile(smallBin, data[:300], 0o644)

	for _, tc := range []struct {
		name   string
		stdin  string
		args   []string
		code   int
		stdout string // substring; "" means stdout must be empty
		stderr string // substring; "" means stderr must be empty
	}{
		{"directory", "", []string{dir}, 1, "", "is a directory"},
		{"missing file", "", []string{filepath.Join(dir, "nope")}, 1, "", "does not exist"},
		{"10 MB binary file", "", []string{big}, 1, "", "larger than 64 KiB"},
		{"10 MB binary on stdin", big, []string{"-"}, 1, "", "larger than 64 KiB"},
		{"small binary file", "", []string{smallBin}, 1, "binary data", ""},
		{"invalid UTF-8", "", []string{latin1}, 1, "byte 0xAB (LEFT-POINTING DOUBLE ANGLE QUOTATION MARK in Windows-1252)", ""},
		{"empty stdin", os.DevNull, nil, 1, "no key", ""},
		{"two files", "", []string{"a", "b"}, 2, "", "at most one FILE"},
		{"json and normalize", "", []string{"--json", "--normalize", latin1}, 2, "", "cannot be used together"},
		{"unknown flag", "", []string{"--bogus"}, 2, "", "unknown flag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runOutpost(t, tc.stdin, append([]string{"key", "check"}, tc.args...)...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, tc.code, r.stdout, r.stderr)
			}
			for _, s := range []struct{ name, got, want string }{{"stdout", r.stdout, tc.stdout}, {"stderr", r.stderr, tc.stderr}} {
				if s.want == "" && s.got != "" || !strings.Contains(s.got, s.want) {
					t.Errorf("%s = %q, want %q", s.name, s.got, s.want)
				}
			}
		})
	}
}

func TestKeyCheckUnreadable(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	file := filepath.Join(dir, "provision_key")
	key, blob := corpusBlob(t)
	if err := os.WriteFile(file, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		// root reads any file: run as nobody, as an admin without sudo.
		cred = &syscall.Credential{Uid: 65534, Gid: 65534}
	} else {
		os.Chmod(file, 0)
	}
	r := runAs(t, cred, "", "key", "check", file)
	if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "permission denied") || !strings.Contains(r.stderr, "sudo") {
		t.Errorf("exit %d, stdout %q, stderr %q; want 1 and a permission message", r.code, r.stdout, r.stderr)
	}
	assertNoLeak(t, "stderr", r.stderr, blob)
}

func TestKeyCheckHelp(t *testing.T) {
	r := runOutpost(t, "", "key", "check", "--help")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	golden(t, "keycheck/help.golden", r.stdout)
}

// TestKeyCheckPromptsOnTerminal: with no FILE and a terminal on standard
// input, key check says what to do instead of waiting silently; it does
// not prompt when standard input is a file or /dev/null (see
// TestKeyCheckBadInput's "empty stdin").
func TestKeyCheckPromptsOnTerminal(t *testing.T) {
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	pts, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer pts.Close()
	key, blob := corpusBlob(t)
	cmd := exec.Command(outpostBin, "key", "check")
	cmd.Stdin = pts
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pts.Close()
	go io.Copy(io.Discard, ptmx) // the terminal's echo
	ptmx.Write([]byte(key + "\n\x04"))
	if err := cmd.Wait(); err != nil {
		t.Fatalf("key check from a terminal: %v\nstdout %s\nstderr %s", err, out.String(), errb.String())
	}
	if errb.String() != "Paste the key, then press Enter and Ctrl-D:\n" {
		t.Errorf("stderr = %q, want the prompt", errb.String())
	}
	if !strings.Contains(out.String(), "valid") {
		t.Errorf("stdout = %q", out.String())
	}
	assertNoLeak(t, "stdout", out.String(), blob)
}

// TestKeyCheckNormalizeRepairsQuotedKey: a whole key in typographic quotes
// and spaces is intact by its checksum: --normalize writes it and still
// names each character on standard error.
func TestKeyCheckNormalizeRepairsQuotedKey(t *testing.T) {
	key, blob := corpusBlob(t)
	file := filepath.Join(corpusDir, "curly_quotes_and_spaces.txt")
	r := runOutpost(t, "", "key", "check", "--normalize", file)
	if r.code != 0 || r.stdout != key {
		t.Fatalf("exit %d, stdout %d bytes; want 0 and the key", r.code, len(r.stdout))
	}
	for _, want := range []string{"U+201C LEFT DOUBLE QUOTATION MARK", "U+201D RIGHT DOUBLE QUOTATION MARK", "column 1: U+0020 SPACE", "normalised: 4 errors"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	assertNoLeak(t, "stderr", r.stderr, blob)
	// What it wrote checks clean.
	out := filepath.Join(t.TempDir(), "key")
	os.WriteFile(out, []byte(r.stdout), 0o600)
	if c := runOutpost(t, "", "key", "check", out); c.code != 0 || !strings.HasPrefix(c.stdout, "valid: key ") {
		t.Errorf("the normalised key: exit %d\n%s", c.code, c.stdout)
	}
	// An error inside the key is never repaired.
	if c := runOutpost(t, "", "key", "check", "--normalize", filepath.Join(corpusDir, "curly_quote_inside.txt")); c.code != 1 || c.stdout != "" {
		t.Errorf("a quote inside the key: exit %d, %d bytes written", c.code, len(c.stdout))
	}
}
