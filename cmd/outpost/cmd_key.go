package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/outpost-appliance/outpost/provkey"
	"github.com/spf13/pflag"
)

var keyCheckEntry = entry{
	Path:    "key check",
	Args:    "[FILE|-]",
	Summary: "Check a provisioning key exactly as it was pasted, and say what is wrong",
	Long: `Reads a provisioning key from FILE, or from standard input when FILE is "-" or
omitted, exactly as bytes, and reports every problem with its line, column and
character: typographic quotes, no-break and zero-width spaces, a BOM, CR/LF,
tabs, wrapping, a missing or extra '|', an unknown version, a bad host, a bad
base64 character, wrong padding, a truncated or altered key.

Straight quotes around the key, one trailing line break (LF or CRLF) and
spaces or line breaks inside the blob (where a terminal or e-mail wrapped it)
are repaired safely and reported as warnings; anything else is an error.

The key itself is never printed, except by --normalize, which writes the
normalised key (and only it) to standard output when every finding was safe to
repair, or when the only errors are typographic quotes or white space around
the whole key and the checksum proves the key inside intact (the errors are
still listed on standard error); otherwise it writes nothing and exits 1. It
ends the key with a line break only on a terminal, so a file it writes holds
the key alone, as 'outpost keys download' writes it.

With no FILE and standard input a terminal, it asks for the key on standard
error: paste it, then press Enter and Ctrl-D.

The redacted form of a key (as 'outpost keys list' and logs print it) is
recognised and refused: print the full key with 'outpost keys reveal NAME'.

Input larger than 64 KiB is refused: it is not a key file.

--json prints one document: input, valid, intact (the key is recognised once
the errors are fixed), repairable (--normalize would write it), version,
host, key_id, redacted, errors, warnings and findings, each with severity
(warning or error), code, line, column, code_point, char_name, message and
fix.

Exit status: 0 the key is valid (warnings allowed), 1 it is not (or the file
cannot be read), 2 usage error.`,
	Examples: `outpost key check /opt/outpost/var/provision_key
pbpaste | outpost key check
outpost key check --json key.txt | jq .findings
(umask 077; outpost key check --normalize key.txt > key.new) && mv key.new key.txt`,
	New: func() command { return &keyCheck{} },
}

type keyCheck struct {
	json      bool
	normalize bool
}

func (c *keyCheck) Register(fs *pflag.FlagSet) {
	fs.BoolVar(&c.json, "json", false, "print the result as JSON on standard output")
	fs.BoolVar(&c.normalize, "normalize", false, "write the normalised key to standard output if every finding was safe to repair, or only quotes or spaces around an intact key were wrong")
}

// keyCheckReport is the result of key check, as JSON and as text.
type keyCheckReport struct {
	Input  string `json:"input"`
	Valid  bool   `json:"valid"`
	Intact bool   `json:"intact"` // the key is intact once the findings are fixed
	// Repairable: valid, or the only errors are quotes or white space
	// around an intact key; --normalize writes it.
	Repairable bool              `json:"repairable"`
	Version    int               `json:"version,omitempty"`
	Host       string            `json:"host,omitempty"`
	KeyID      string            `json:"key_id,omitempty"`
	Redacted   string            `json:"redacted,omitempty"`
	Errors     int               `json:"errors"`
	Warnings   int               `json:"warnings"`
	Findings   []provkey.Finding `json:"findings"`
}

func (c *keyCheck) Run(ctx context.Context, s streams, args []string) error {
	if len(args) > 1 {
		return usagef("key check: want at most one FILE, got %d arguments; run 'outpost key check --help'", len(args))
	}
	if c.json && c.normalize {
		return usagef("key check: --json and --normalize cannot be used together: --normalize writes only the key")
	}
	name := "-"
	if len(args) == 1 {
		name = args[0]
	}
	if name == "-" && isTerminal(s.In) {
		fmt.Fprintln(s.Err, "Paste the key, then press Enter and Ctrl-D:")
	}
	raw, err := readKeyInput(name, s.In)
	if err != nil {
		return err
	}
	res := provkey.Check(raw)
	rep := keyCheckReport{
		Input:      name,
		Valid:      res.Valid(),
		Intact:     res.Parsed,
		Repairable: res.Repairable(),
		Errors:     res.Count(provkey.Error),
		Warnings:   res.Count(provkey.Warning),
		Findings:   res.Findings,
	}
	if res.Parsed {
		rep.Version, rep.Host, rep.KeyID, rep.Redacted = res.Key.Version, res.Key.Host, res.Key.ID.String(), res.Key.Redacted()
	}
	switch {
	case c.json:
		enc := json.NewEncoder(s.Out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	case c.normalize:
		printFindings(s.Err, rep)
		if !rep.Repairable {
			fmt.Fprintf(s.Err, "not normalised: %s; nothing was written\n", countText(rep))
			return silentExit(exitFailure)
		}
		if !rep.Valid {
			fmt.Fprintf(s.Err, "normalised: %s, all quotes or white space around the key; the checksum proves the key inside intact\n", plural(rep.Errors, "error"))
		}
		fmt.Fprint(s.Out, res.Key.Reveal())
		if isTerminal(s.Out) {
			fmt.Fprintln(s.Out)
		}
		return nil
	default:
		printFindings(s.Out, rep)
		printVerdict(s.Out, rep)
	}
	if !rep.Valid {
		return silentExit(exitFailure)
	}
	return nil
}

// readKeyInput reads at most one byte more than provkey.MaxInput, so that a
// huge file is refused without being read.
func readKeyInput(name string, stdin io.Reader) ([]byte, error) {
	var r io.Reader = stdin
	label := "standard input"
	if name != "-" {
		label = name
		fi, err := os.Stat(name)
		switch {
		case errors.Is(err, fs.ErrPermission):
			return nil, fmt.Errorf("cannot read %s: permission denied; a key file is readable by its owner only (mode 0600): run as that user or with sudo", name)
		case errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("%s does not exist; give the file that holds the key (on an appliance: /opt/outpost/var/provision_key)", name)
		case err != nil:
			return nil, fmt.Errorf("cannot read %s: %w", name, err)
		case fi.IsDir():
			return nil, fmt.Errorf("%s is a directory; give the file that holds the key (on an appliance: /opt/outpost/var/provision_key)", name)
		}
		f, err := os.Open(name)
		if errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("cannot read %s: permission denied; a key file is readable by its owner only (mode 0600): run as that user or with sudo", name)
		}
		if err != nil {
			return nil, fmt.Errorf("cannot read %s: %w", name, err)
		}
		defer f.Close()
		r = f
	}
	raw, err := io.ReadAll(io.LimitReader(r, provkey.MaxInput+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", label, err)
	}
	if len(raw) > provkey.MaxInput {
		return nil, fmt.Errorf("%s is larger than %d KiB, so it is not a key (a key is about 130 characters); check that it is the right file", label, provkey.MaxInput>>10)
	}
	return raw, nil
}

func printFindings(w io.Writer, rep keyCheckReport) {
	for _, f := range rep.Findings {
		fmt.Fprintln(w, f.String())
		fmt.Fprintf(w, "  fix: %s\n", f.Fix)
	}
}

func printVerdict(w io.Writer, rep keyCheckReport) {
	if len(rep.Findings) > 0 {
		fmt.Fprintln(w)
	}
	switch {
	case rep.Valid && rep.Warnings == 0:
		fmt.Fprintf(w, "valid: key %s for %s\n", rep.KeyID, rep.Host)
	case rep.Valid:
		fmt.Fprintf(w, "valid after safe repairs (%s): key %s for %s\n", plural(rep.Warnings, "warning"), rep.KeyID, rep.Host)
		fmt.Fprintf(w, "To write the repaired key: (umask 077; outpost key check --normalize FILE > FILE.new) && mv FILE.new FILE\n")
	case rep.Repairable:
		fmt.Fprintf(w, "invalid as given (%s): only quotes or white space around the key are wrong; the key inside is intact: key %s for %s\n", countText(rep), rep.KeyID, rep.Host)
		fmt.Fprintf(w, "To write the repaired key: (umask 077; outpost key check --normalize FILE > FILE.new) && mv FILE.new FILE\n")
	case rep.Intact:
		fmt.Fprintf(w, "invalid: %s. Once the errors are fixed the key is intact: key %s for %s\n", countText(rep), rep.KeyID, rep.Host)
	default:
		fmt.Fprintf(w, "invalid: %s\n", countText(rep))
	}
}

func countText(rep keyCheckReport) string {
	return fmt.Sprintf("%s, %s", plural(rep.Errors, "error"), plural(rep.Warnings, "warning"))
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
