package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestUsageAndStatus(t *testing.T) {
	cases := []struct {
		args        []string
		code        int
		out, errOut string
	}{
		{[]string{"--help"}, 0, "outpost-firstboot status [--root DIR] [--json]", ""},
		{[]string{"--bogus"}, 2, "", "unknown flag: --bogus"},
		{[]string{"status", "extra"}, 2, "", `unexpected argument "extra"`},
		{[]string{"--root", "/nonexistent/outpost"}, 1, "", "root /nonexistent/outpost"},
		{[]string{"status", "--root", "ROOT"}, 0, "State:", ""},
	}
	for _, c := range cases {
		root := t.TempDir()
		args := append([]string(nil), c.args...)
		for i := range args {
			args[i] = strings.ReplaceAll(args[i], "ROOT", root)
		}
		var out, errb bytes.Buffer
		code := run(context.Background(), args, &out, &errb)
		if code != c.code || !strings.Contains(out.String(), c.out) || !strings.Contains(errb.String(), c.errOut) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", c.args, code, out.String(), errb.String())
		}
	}
	var out bytes.Buffer
	if code := run(context.Background(), []string{"status", "--json", "--root", t.TempDir()}, &out, &out); code != 0 {
		t.Fatalf("status --json: exit %d", code)
	}
	var s struct{ State string }
	if err := json.Unmarshal(out.Bytes(), &s); err != nil || s.State != "configuring" {
		t.Errorf("status --json on a fresh root = %q, %v", out.String(), err)
	}
}
