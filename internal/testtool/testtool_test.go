package testtool

import (
	"fmt"
	"testing"
)

// recorder stands in for a test to see whether it would skip or fail.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper()                           {}
func (r *recorder) Skip(args ...any)                  { r.skipped = fmt.Sprint(args...) }
func (r *recorder) Fatalf(format string, args ...any) { r.failed = fmt.Sprintf(format, args...) }
func (r *recorder) Logf(format string, args ...any)   {}

func TestNeed(t *testing.T) {
	const want = "qemu-img-nonexistent, /no/such/OVMF.fd not found; install Debian packages OVMF.fd, qemu-img-nonexistent (scripts/setup.sh)"
	t.Setenv("CI", "")
	r := &recorder{}
	Need(r, "sh", "qemu-img-nonexistent", "/no/such/OVMF.fd")
	if r.skipped != want || r.failed != "" {
		t.Errorf("without CI: skipped %q, failed %q; want a skip: %q", r.skipped, r.failed, want)
	}
	t.Setenv("CI", "true")
	r = &recorder{}
	Need(r, "sh", "qemu-img-nonexistent", "/no/such/OVMF.fd")
	if r.skipped != "" || r.failed != want+" (CI is set: this test must run)" {
		t.Errorf("under CI: skipped %q, failed %q", r.skipped, r.failed)
	}
	r = &recorder{}
	Need(r, "sh")
	if r.skipped != "" || r.failed != "" {
		t.Errorf("present tool: skipped %q, failed %q", r.skipped, r.failed)
	}
}

func TestInstall(t *testing.T) {
	for _, c := range []struct {
		tools []string
		want  string
	}{
		{[]string{"qemu-img"}, "install Debian package qemu-utils (scripts/setup.sh)"},
		{[]string{"e2fsck", "debugfs"}, "install Debian package e2fsprogs (scripts/setup.sh)"},
		{[]string{"dnsmasq", "chronyd"}, "install Debian packages chrony, dnsmasq-base (scripts/setup.sh)"},
		{[]string{"/usr/share/OVMF/OVMF_CODE.fd"}, "install Debian package ovmf (scripts/setup.sh)"},
	} {
		if got := Install(c.tools...); got != c.want {
			t.Errorf("Install(%q) = %q, want %q", c.tools, got, c.want)
		}
	}
}
