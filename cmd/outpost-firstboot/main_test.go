package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-appliance/outpost/firstboot"
	"github.com/outpost-appliance/outpost/provkey"
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
		{[]string{"status", "--root", "ROOT"}, 3, "First boot has not run on this machine", ""},
		{[]string{"--version"}, 0, "outpost-firstboot dev\n", ""},
		{[]string{"status", "--version"}, 0, "outpost-firstboot dev\n", ""},
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
	if code := run(context.Background(), []string{"status", "--json", "--root", t.TempDir()}, &out, &out); code != 3 {
		t.Fatalf("status --json: exit %d", code)
	}
	var s struct{ State string }
	if err := json.Unmarshal(out.Bytes(), &s); err != nil || s.State != "not_started" {
		t.Errorf("status --json on a fresh root = %q, %v", out.String(), err)
	}
}

// TestStatusExitCodes: automation can wait on `status`: 0 enrolled, 1
// failed, 3 not yet (not run, running, waiting for the key).
func TestStatusExitCodes(t *testing.T) {
	for state, c := range map[string]struct {
		json string
		code int
	}{
		"enrolled":        {`{"version":1,"done":{"config":"2026-01-01T00:00:00Z"},"enroll":{"name":"Melbourne-1","group":"Melbourne"},"updated":"2026-01-01T00:00:00Z"}`, 0},
		"failed":          {`{"version":1,"done":{},"stage":"network","last_error":"no DHCP server answered","updated":"2026-01-01T00:00:00Z"}`, 1},
		"configuring":     {`{"version":1,"done":{"config":"2026-01-01T00:00:00Z"},"stage":"network","updated":"2026-01-01T00:00:00Z"}`, 3},
		"waiting_for_key": {`{"version":1,"done":{},"stage":"preflight","last_error":"` + firstboot.ErrNoKey.Error() + `","updated":"2026-01-01T00:00:00Z"}`, 3},
	} {
		root := t.TempDir()
		p := filepath.Join(root, firstboot.StateFile)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(c.json), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"status", "--root", root}, {"status", "--json", "--root", root}} {
			var out, errb bytes.Buffer
			code := run(context.Background(), args, &out, &errb)
			if code != c.code || !strings.Contains(out.String(), state) {
				t.Errorf("%s: %v: exit %d (want %d), stdout %q, stderr %q", state, args, code, c.code, out.String(), errb.String())
			}
		}
	}
}

func TestCurlyQuotedKeyRefusedBeforeAnyChange(t *testing.T) {
	root := t.TempDir()
	k, err := provkey.Generate("cp.example.com", provkey.Pin{7}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, "opt/outpost/var/provision_key")
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, []byte("\u201c"+k.Reveal()+"\u201d\n"), 0o600)
	var out, errb bytes.Buffer
	// The interface does not exist: reaching the network stage would fail
	// differently, so the message proves nothing was touched.
	code := run(context.Background(), []string{"--root", root, "--interface", "outpost-none0"}, &out, &errb)
	want := "outpost.provision_key (from /opt/outpost/var/provision_key): error: line 1, column 1: U+201C LEFT DOUBLE QUOTATION MARK"
	if code != 1 || !strings.Contains(errb.String(), want) {
		t.Fatalf("exit %d, stderr:\n%s", code, errb.String())
	}
	if strings.Contains(errb.String(), k.Reveal()[20:]) {
		t.Error("stderr holds the key")
	}
	for _, f := range []string{"etc/resolv.conf", "etc/systemd/network/10-outpost.network", "etc/hostname"} {
		if _, err := os.Stat(filepath.Join(root, f)); err == nil {
			t.Errorf("%s written despite the invalid key", f)
		}
	}
}
