package sysroot

import (
	"os"
	"path/filepath"
	"testing"
)

func TestPathFollowsLinksInsideRoot(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "etc"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "run/systemd/resolve"), 0o755))
	// The appliance's usual absolute link: must land under dir, not in the host's /run.
	must(os.Symlink("/run/systemd/resolve/stub-resolv.conf", filepath.Join(dir, "etc/resolv.conf")))
	// A relative link that tries to climb out.
	must(os.Symlink("../../../../../../etc/passwd", filepath.Join(dir, "etc/escape")))
	// A directory link, absolute.
	must(os.Symlink("/run", filepath.Join(dir, "var-run")))
	// A loop.
	must(os.Symlink("/loop", filepath.Join(dir, "loop")))

	r, err := New(dir)
	must(err)
	cases := []struct{ in, want string }{
		{"/etc/resolv.conf", "run/systemd/resolve/stub-resolv.conf"},
		{"etc/resolv.conf", "run/systemd/resolve/stub-resolv.conf"},
		{"/etc/escape", "etc/passwd"},
		{"/var-run/outpost/status.json", "run/outpost/status.json"},
		{"/../../etc/hostname", "etc/hostname"},
		{"/new/dir/file", "new/dir/file"},
	}
	for _, c := range cases {
		got, err := r.Path(c.in)
		if err != nil {
			t.Errorf("Path(%q): %v", c.in, err)
			continue
		}
		if want := filepath.Join(dir, c.want); got != want {
			t.Errorf("Path(%q) = %s, want %s", c.in, got, want)
		}
	}
	if _, err := r.Path("/loop/x"); err == nil {
		t.Error("Path through a symlink loop: want an error")
	}
}

func TestWriteFileThroughAbsoluteLink(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	if err := os.Symlink("/run/systemd/resolve/stub-resolv.conf", filepath.Join(dir, "etc/resolv.conf")); err != nil {
		t.Fatal(err)
	}
	r, _ := New(dir)
	if err := r.WriteFile("/etc/resolv.conf", []byte("nameserver 10.0.0.1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "run/systemd/resolve/stub-resolv.conf"))
	if err != nil || string(b) != "nameserver 10.0.0.1\n" {
		t.Fatalf("target content = %q, %v", b, err)
	}
	fi, _ := os.Lstat(filepath.Join(dir, "etc/resolv.conf"))
	if fi.Mode()&os.ModeSymlink == 0 {
		t.Error("the link itself was replaced; want its target written")
	}
	fi, _ = os.Stat(filepath.Join(dir, "run/systemd/resolve/stub-resolv.conf"))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "run/systemd/resolve"))
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}
