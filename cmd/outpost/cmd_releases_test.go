package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-appliance/outpost/release"
)

// TestReleasesKeygen: the key is 0600 and parses, the public key beside
// it too; a second run refuses to overwrite; -o is required.
func TestReleasesKeygen(t *testing.T) {
	key := filepath.Join(t.TempDir(), "release.key")
	r := runOutpost(t, "", "releases", "keygen", "-o", key)
	if r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "mode 0600") {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	fi, err := os.Stat(key)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v, want 0600", fi.Mode().Perm())
	}
	priv, _ := os.ReadFile(key)
	if _, err := release.ParsePrivateKey(priv); err != nil {
		t.Error(err)
	}
	pub, _ := os.ReadFile(key + ".pub")
	if _, err := release.ParsePublicKey(pub); err != nil {
		t.Error(err)
	}

	r = runOutpost(t, "", "releases", "keygen", "-o", key)
	if r.code == 0 || !strings.Contains(r.stderr, "never overwritten") {
		t.Errorf("second keygen: exit %d, stderr %q", r.code, r.stderr)
	}
	if again, _ := os.ReadFile(key); string(again) != string(priv) {
		t.Error("second keygen changed the key")
	}
	if r = runOutpost(t, "", "releases", "keygen"); r.code != 2 {
		t.Errorf("without -o: exit %d, want 2; stderr %q", r.code, r.stderr)
	}
}

// A --release-key that is not an Ed25519 PKCS#8 key is refused before
// anything is written, with what to do.
func TestImageReleaseKeyRefused(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.key")
	os.WriteFile(bad, []byte("not a key"), 0o600)
	out := filepath.Join(dir, "out")
	r := runOutpost(t, "", "image", "pack", "--disk", bad, "--format", "raw", "-o", out, "--release-key", bad)
	if r.code == 0 || !strings.Contains(r.stderr, "--release-key") || !strings.Contains(r.stderr, "releases keygen") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("the output directory was created")
	}
}

func TestReleaseHelpGolden(t *testing.T) {
	for _, tc := range []struct {
		file string
		args []string
	}{
		{"image-build-help.txt", []string{"image", "build", "--help"}},
		{"releases-keygen-help.txt", []string{"releases", "keygen", "--help"}},
	} {
		r := runOutpost(t, "", tc.args...)
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("%q: exit %d, stderr %q", tc.args, r.code, r.stderr)
		}
		golden(t, tc.file, r.stdout)
	}
}
