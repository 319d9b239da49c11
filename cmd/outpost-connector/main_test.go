package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-appliance/outpost/appliance"
)

// TestInstallRefuses: install needs one bundle, and an outpost appliance
// with A/B roots; each refusal says what is wrong, exits non-zero and
// writes nothing.
func TestInstallRefuses(t *testing.T) {
	root := t.TempDir()
	bundle := filepath.Join(t.TempDir(), "x.bundle")
	if err := os.WriteFile(bundle, []byte("not a bundle"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no bundle", []string{"install", "--root", root}, exitUsage, "install: give one bundle file"},
		{"two bundles", []string{"install", "--root", root, bundle, bundle}, exitUsage, "install: give one bundle file"},
		{"not an appliance", []string{"install", "--root", root, bundle}, exitFailure, "not an outpost appliance"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(context.Background(), c.args, &out, &errb); code != c.code || !strings.Contains(errb.String(), c.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, errb.String(), c.code, c.want)
			}
		})
	}
	// An appliance without a release key (built without --release-key).
	if err := os.MkdirAll(filepath.Join(root, filepath.Dir(appliance.MarkerFile)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, appliance.MarkerFile), appliance.Marker("outpost-connector", "1.0"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"install", "--root", root, bundle}, &out, &errb); code != exitFailure || !strings.Contains(errb.String(), "trusts no release key") {
		t.Errorf("exit %d, stderr %q; want the missing release key named", code, errb.String())
	}
	if entries, _ := os.ReadDir(root); len(entries) != 1 {
		t.Errorf("the refused install wrote into the root: %v", entries)
	}
}
