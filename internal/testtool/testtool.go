// Package testtool is how a test asks for what the host must provide: a
// program on PATH (qemu-img, openssl, dnsmasq) or a file a package installs
// (OVMF firmware, systemd-boot). When it is missing, the test is skipped
// with the Debian package to install, except under CI (the environment
// variable CI set), where every integration test must run and a missing
// tool fails the test instead.
//
// It is for tests only; scripts/setup.sh installs everything named here.
package testtool

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// packages maps a program, or an absolute file path, to the Debian package
// that installs it.
var packages = map[string]string{
	"qemu-img":           "qemu-utils",
	"qemu-system-x86_64": "qemu-system-x86",
	"dnsmasq":            "dnsmasq-base",
	"chronyd":            "chrony",
	"e2fsck":             "e2fsprogs",
	"debugfs":            "e2fsprogs",
	"dumpe2fs":           "e2fsprogs",
	"mkfs.ext4":          "e2fsprogs",
	"fsck.vfat":          "dosfstools",
	"vmdkinfo":           "libvmdk-utils",
	"openssl":            "openssl",
	"curl":               "curl",
	"mmdebstrap":         "mmdebstrap",
	"ip":                 "iproute2",
	"systemd-analyze":    "systemd",
	"dpkg-deb":           "dpkg",
	"tar":                "tar",
	"sha256sum":          "coreutils",
	"cp":                 "coreutils",
	"chromium":           "chromium",
	// internal/pgtest finds these under /usr/lib/postgresql/*/bin, not on
	// PATH, and reports their absence itself; listed for Install.
	"initdb": "postgresql",
	"pg_ctl": "postgresql",
	// govc is not a host tool: internal/govctest builds it from the module.

	"/usr/share/OVMF/OVMF_CODE.fd":                  "ovmf",
	"/usr/share/OVMF/OVMF_VARS.fd":                  "ovmf",
	"/usr/lib/systemd/boot/efi/systemd-bootx64.efi": "systemd-boot-efi",
}

// inCI reports whether the tests run under CI, where nothing may be skipped
// for want of a tool.
func inCI() bool { return os.Getenv("CI") != "" }

// Need skips the test unless every tool is present, or fails it under CI.
// A tool is a program looked up on PATH or, when it starts with "/", a file.
// The message names every missing tool and the packages to install.
func Need(t testing.TB, tools ...string) {
	t.Helper()
	var missing []string
	for _, tool := range tools {
		if _, err := find(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		Missing(t, strings.Join(missing, ", ")+" not found; "+Install(missing...))
	}
}

// Path returns the path of program, skipping or failing the test as Need
// does when it is not on PATH.
func Path(t testing.TB, program string) string {
	t.Helper()
	p, err := find(program)
	if err != nil {
		Missing(t, program+" not found; "+Install(program))
	}
	return p
}

// Want returns the path of program for a check that is worth making but
// does not decide the test: when program is missing the test goes on
// without that check (ok is false), except under CI, where it fails.
func Want(t testing.TB, program string) (path string, ok bool) {
	t.Helper()
	p, err := find(program)
	if err != nil {
		Unchecked(t, program+" not found; "+Install(program))
		return "", false
	}
	return p, true
}

// Missing skips the test for a requirement that is not a tool (root, a
// Python module, a server binary), or fails it under CI. what says what is
// missing and how to get it.
func Missing(t testing.TB, what string) {
	t.Helper()
	if inCI() {
		t.Fatalf("%s (CI is set: this test must run)", what)
		return
	}
	t.Skip(what)
}

// Unchecked records that part of a test did not run because what is
// missing, or fails the test under CI.
func Unchecked(t testing.TB, what string) {
	t.Helper()
	if inCI() {
		t.Fatalf("%s (CI is set: this check must run)", what)
		return
	}
	t.Logf("%s; skipping that check", what)
}

// Install says how to get tools: the Debian packages that install them
// (a tool not in the table is named as it is) and the script that installs
// them all.
func Install(tools ...string) string {
	seen := map[string]bool{}
	var pkgs []string
	for _, tool := range tools {
		p, ok := packages[tool]
		if !ok {
			p = filepath.Base(tool)
		}
		if !seen[p] {
			seen[p] = true
			pkgs = append(pkgs, p)
		}
	}
	sort.Strings(pkgs)
	noun := "package"
	if len(pkgs) > 1 {
		noun = "packages"
	}
	return fmt.Sprintf("install Debian %s %s (scripts/setup.sh)", noun, strings.Join(pkgs, ", "))
}

func find(tool string) (string, error) {
	if strings.HasPrefix(tool, "/") {
		_, err := os.Stat(tool)
		return tool, err
	}
	return exec.LookPath(tool)
}
