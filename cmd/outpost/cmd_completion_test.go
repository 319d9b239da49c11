package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func completion(t *testing.T, shell string) string {
	t.Helper()
	var o, e strings.Builder
	if err := run(context.Background(), []string{"completion", shell}, strings.NewReader(""), &o, &e); err != nil {
		t.Fatalf("completion %s: %v %s", shell, err, e.String())
	}
	return o.String()
}

// TestCompletion: each script names every top-level command; the bash one
// parses (bash -n) and completes commands, subcommands and flags.
func TestCompletion(t *testing.T) {
	top := map[string]bool{"help": true, "version": true}
	for _, e := range commands() {
		top[strings.Fields(e.Path)[0]] = true
	}
	for _, sh := range []string{"bash", "zsh", "fish"} {
		script := completion(t, sh)
		for w := range top {
			if !strings.Contains(script, w) {
				t.Errorf("%s completion does not mention %q", sh, w)
			}
		}
		if sh == "fish" {
			for _, want := range []string{"-a keys", "-l max-uses", "__fish_seen_subcommand_from keys; and __fish_seen_subcommand_from create"} {
				if !strings.Contains(script, want) {
					t.Errorf("fish completion lacks %q", want)
				}
			}
		}
	}
	if err := run(context.Background(), []string{"completion", "tcsh"}, nil, &strings.Builder{}, &strings.Builder{}); exitCode(err, &strings.Builder{}) != exitUsage {
		t.Errorf("completion tcsh: %v, want a usage error", err)
	}

	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed")
	}
	file := filepath.Join(t.TempDir(), "outpost.bash")
	os.WriteFile(file, []byte(completion(t, "bash")), 0o644)
	if out, err := exec.Command(bash, "-n", file).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		words []string
		want  string
	}{
		{[]string{"outpost", "ke"}, "key keys"},
		{[]string{"outpost", "keys", "re"}, "regenerate reveal revoke"},
		{[]string{"outpost", "keys", "create", "--max"}, "--max-uses"},
		{[]string{"outpost", "keys", "show", "--config", "/x", "Melbourne", "--j"}, "--json"},
		{[]string{"outpost", "server", "--da"}, "--data --database"},
		{[]string{"outpost", "co"}, "completion connectors"},
	} {
		args := append([]string{"-c", `source "$0"; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _outpost; echo "${COMPREPLY[*]}"`, file}, tc.words...)
		cmd := exec.Command(bash, args...)
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != tc.want {
			t.Errorf("complete %q: %v %q, want %q", tc.words, err, out, tc.want)
		}
	}
}
