package main

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/outpost-appliance/outpost/builder"
	"github.com/outpost-appliance/outpost/internal/testtool"
)

// runCLI runs outpost in-process and returns its exit code and streams.
func runCLI(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var out, errb bytes.Buffer
	err := run(context.Background(), args, strings.NewReader(""), &out, &errb)
	code := exitCode(err, &errb)
	return code, out.String(), errb.String()
}

// rootfsDir writes a minimal root filesystem: a kernel is all Build needs.
func rootfsDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "boot"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "boot/vmlinuz-6.1.0-1-cloud-amd64"), []byte("kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func writeSpec(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "image.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

const smallSpec = "name: lab\nversion: '2'\nhardware: {disk: {size: 1GiB}}\n"

func TestImageBuildRaw(t *testing.T) {
	testtool.Need(t, builder.HostBootloader)
	out := t.TempDir()
	spec := writeSpec(t, smallSpec)
	code, stdout, stderr := runCLI(t, map[string]string{"SOURCE_DATE_EPOCH": "1700000000"},
		"image", "build", "-f", spec, "--rootfs", rootfsDir(t), "--format", "raw", "-o", out, "--mac", "00:50:56:01:02:03", "--json")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if got := listDir(t, out); len(got) != 1 || got[0] != "lab-2.raw" {
		t.Errorf("output directory holds %q, want only lab-2.raw", got)
	}
	if !strings.Contains(stdout, `"mac": "00:50:56:01:02:03"`) || !strings.Contains(stdout, filepath.Join(out, "lab-2.raw")) {
		t.Errorf("stdout:\n%s", stdout)
	}
	if stderr != "" {
		t.Errorf("not a terminal, yet stderr has:\n%s", stderr)
	}
	fi, err := os.Stat(filepath.Join(out, "lab-2.raw"))
	if err != nil || fi.Size() != 1<<30 {
		t.Fatalf("lab-2.raw: %v, %v", fi, err)
	}

	// pack wraps the same disk again; raw is a sparse copy.
	dist := t.TempDir()
	code, stdout, stderr = runCLI(t, nil, "image", "pack", "--disk", filepath.Join(out, "lab-2.raw"), "-f", spec, "--name", "lab-b", "--format", "raw", "-o", dist)
	if code != 0 {
		t.Fatalf("pack: exit %d\n%s", code, stderr)
	}
	if strings.TrimSpace(stdout) != filepath.Join(dist, "lab-b-2.raw") {
		t.Errorf("pack stdout %q", stdout)
	}
	packed := filepath.Join(dist, "lab-b-2.raw")
	if qemuImg, ok := testtool.Want(t, "qemu-img"); ok {
		if out, err := exec.Command(qemuImg, "compare", "-f", "raw", "-F", "raw", filepath.Join(out, "lab-2.raw"), packed).CombinedOutput(); err != nil {
			t.Errorf("qemu-img compare built and packed raw: %v\n%s", err, out)
		}
	}
	var st syscall.Stat_t
	if err := syscall.Stat(packed, &st); err != nil || st.Blocks*512 > 64<<20 || st.Nlink != 1 {
		t.Errorf("packed raw: %d bytes allocated, %d links; want a sparse copy (err %v)", st.Blocks*512, st.Nlink, err)
	}
}

func TestImageBuildRefuses(t *testing.T) {
	tooBig := rootfsDir(t)
	f, err := os.Create(filepath.Join(tooBig, "huge"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(2 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"missing spec", []string{"-f", "/nonexistent/image.yaml", "--rootfs", rootfsDir(t)}, 1, "reading image spec: open /nonexistent/image.yaml: no such file or directory"},
		{"unknown field", []string{"-f", writeSpec(t, smallSpec+"colour: red\n"), "--rootfs", rootfsDir(t)}, 1, `image.yaml: colour: unknown field "colour"`},
		{"bad mac", []string{"--mac", "00:50:56:40:00:00", "--rootfs", rootfsDir(t)}, 2, "--mac: invalid MAC address 00:50:56:40:00:00: outside VMware's manual range"},
		{"unknown format", []string{"--format", "vhd", "--rootfs", rootfsDir(t)}, 2, `--format: unknown format "vhd"; available: ova, qcow2, vmdk, raw`},
		{"no rootfs", []string{"-f", writeSpec(t, smallSpec)}, 2, "no root filesystem: give --rootfs DIR|TAR"},
		{"rootfs missing", []string{"--rootfs", "/nonexistent/rootfs"}, 1, "root filesystem: stat /nonexistent/rootfs: no such file or directory"},
		{"no kernel", []string{"--rootfs", t.TempDir()}, 1, "has no boot/vmlinuz-*"},
		{"too large", []string{"-f", writeSpec(t, smallSpec), "--rootfs", tooBig}, 1, "root filesystem does not fit the disk"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := t.TempDir()
			args := append([]string{"image", "build", "-o", out}, tt.args...)
			code, stdout, stderr := runCLI(t, nil, args...)
			if code != tt.code || !strings.Contains(stderr, tt.msg) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d and %q", code, stderr, tt.code, tt.msg)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			if left := listDir(t, out); len(left) != 0 {
				t.Errorf("left behind in the output directory: %q", left)
			}
		})
	}
}

func TestImageBuildUnwritableOutput(t *testing.T) {
	if os.Geteuid() == 0 {
		// root writes anywhere: use a path under a regular file instead.
		file := filepath.Join(t.TempDir(), "file")
		os.WriteFile(file, nil, 0o644)
		code, _, stderr := runCLI(t, nil, "image", "build", "--rootfs", rootfsDir(t), "-o", filepath.Join(file, "out"))
		if code != 1 || !strings.Contains(stderr, "output directory") {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
		return
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o555)
	code, _, stderr := runCLI(t, nil, "image", "build", "--rootfs", rootfsDir(t), "-o", dir)
	if code != 1 || !strings.Contains(stderr, "is not writable") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

// TestImageBuildReproducible builds the compressed formats twice (the raw
// disk's reproducibility is the builder's test) with the same inputs
// and SOURCE_DATE_EPOCH and expects byte-identical files; a third build with
// another epoch must differ, so the comparison can fail.
func TestImageBuildReproducible(t *testing.T) {
	rootfs := rootfsDir(t)
	if err := os.WriteFile(filepath.Join(rootfs, "etc-motd"), bytes.Repeat([]byte("outpost "), 40000), 0o644); err != nil {
		t.Fatal(err)
	}
	build := func(epoch string) map[string][]byte {
		out := t.TempDir()
		code, _, stderr := runCLI(t, map[string]string{"SOURCE_DATE_EPOCH": epoch},
			"image", "build", "--rootfs", rootfs, "--format", "ova,qcow2,vmdk", "-o", out)
		if code != 0 {
			t.Fatalf("image build: exit %d: %s", code, stderr)
		}
		files := map[string][]byte{}
		for _, name := range listDir(t, out) {
			b, err := os.ReadFile(filepath.Join(out, name))
			if err != nil {
				t.Fatal(err)
			}
			files[name] = b
		}
		if len(files) != 3 {
			t.Fatalf("outputs %v, want 3 files", listDir(t, out))
		}
		return files
	}
	a, b, c := build("1700000000"), build("1700000000"), build("1800000000")
	for name, data := range a {
		if !bytes.Equal(data, b[name]) {
			t.Errorf("%s differs between two builds with the same inputs", name)
		}
	}
	if bytes.Equal(a["outpost-connector-0.1.0.ova"], c["outpost-connector-0.1.0.ova"]) {
		t.Errorf("the OVA did not change with SOURCE_DATE_EPOCH; the comparison proves nothing")
	}
}

// TestImageBuildHardwareVersion: the spec's virtual_hardware reaches the
// OVA's descriptor, and the default is vmx-14 (ESXi 6.7).
func TestImageBuildHardwareVersion(t *testing.T) {
	for _, c := range []struct{ spec, want string }{
		{smallSpec, "<vssd:VirtualSystemType>vmx-14</vssd:VirtualSystemType>"},
		{"name: lab\nversion: '2'\nhardware: {disk: {size: 1GiB}, virtual_hardware: vmx-13}\n", "<vssd:VirtualSystemType>vmx-13</vssd:VirtualSystemType>"},
	} {
		out := t.TempDir()
		code, _, stderr := runCLI(t, nil, "image", "build", "-f", writeSpec(t, c.spec), "--rootfs", rootfsDir(t), "--format", "ova", "-o", out)
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
		ovf, err := exec.Command("tar", "xOf", filepath.Join(out, "lab-2.ova"), "lab.ovf").Output()
		if err != nil {
			t.Fatalf("tar xOf lab.ovf: %v", err)
		}
		if !strings.Contains(string(ovf), c.want) {
			t.Errorf("descriptor lacks %s", c.want)
		}
	}
}

// gptDisk writes a small raw disk with a protective MBR and a GPT.
func gptDisk(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.raw")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 4 << 20
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	tbl := &gpt.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true, Partitions: []*gpt.Partition{
		{Index: 1, Start: 2048, End: size/512 - 34, Type: gpt.LinuxFilesystem, Name: "data"},
	}}
	if err := tbl.Write(f, size); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestImagePackRefusesNonRawDisks: a qcow2 named .raw and 1 MiB of random
// data were packed as if raw; they are refused, naming the format and the
// conversion, and nothing is written.
func TestImagePackRefusesNonRawDisks(t *testing.T) {
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("qemu-img missing (CI requires it)")
		}
		t.Skip("qemu-img missing")
	}
	dir := t.TempDir()
	qcow := filepath.Join(dir, "x.qcow2")
	if out, err := exec.Command(qemuImg, "create", "-q", "-f", "qcow2", qcow, "8M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	random := filepath.Join(dir, "random.raw")
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i*131 + i>>9)
	}
	os.WriteFile(random, data, 0o644)
	for _, c := range []struct{ disk, format, want string }{
		{qcow, "raw", "it is a qcow2 image; convert it first: qemu-img convert -O raw " + qcow + " DISK.raw"},
		{random, "ova", "not a raw GPT disk image: it has no partition table"},
	} {
		out := t.TempDir()
		code, stdout, stderr := runCLI(t, nil, "image", "pack", "--disk", c.disk, "--format", c.format, "-o", out)
		if code != 1 || !strings.Contains(stderr, c.want) || stdout != "" {
			t.Errorf("pack %s: exit %d, stdout %q, stderr:\n%s\nwant exit 1 and %q", filepath.Base(c.disk), code, stdout, stderr, c.want)
		}
		if left := listDir(t, out); len(left) != 0 {
			t.Errorf("pack %s left %q", filepath.Base(c.disk), left)
		}
	}
}

// TestImageFormatFlags: an empty --format and signing flags without an OVA
// are usage errors; a format named twice is written once.
func TestImageFormatFlags(t *testing.T) {
	disk := gptDisk(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--format", ""}, "--format: no format given"},
		{[]string{"--format", "raw,"}, "--format: empty format name"},
		{[]string{"--format", "qcow2", "--sign-key", "k.pem", "--sign-cert", "c.pem"}, "--format qcow2 writes no OVA: add ova to --format"},
	} {
		out := t.TempDir()
		code, _, stderr := runCLI(t, nil, append([]string{"image", "pack", "--disk", disk, "-o", out}, c.args...)...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%q: exit %d, stderr:\n%s\nwant exit 2 and %q", c.args, code, stderr, c.want)
		}
		if left := listDir(t, out); len(left) != 0 {
			t.Errorf("%q left %q", c.args, left)
		}
	}
	out := t.TempDir()
	code, stdout, stderr := runCLI(t, nil, "image", "pack", "--disk", disk, "-f", writeSpec(t, smallSpec), "--format", "ova,ova", "-o", out)
	if code != 0 || strings.TrimSpace(stdout) != filepath.Join(out, "lab-2.ova") {
		t.Errorf("--format ova,ova: exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
	if left := listDir(t, out); len(left) != 1 || left[0] != "lab-2.ova" {
		t.Errorf("--format ova,ova left %q", left)
	}
}

// TestImageBuildOVATimes: without SOURCE_DATE_EPOCH, the OVA's members are
// dated with the newest modification time in the root filesystem, as the
// help says, not 1970.
func TestImageBuildOVATimes(t *testing.T) {
	if _, err := os.Stat("/usr/lib/systemd/boot/efi/systemd-bootx64.efi"); err != nil && os.Getenv("CI") == "" {
		t.Skip("systemd-boot-efi not installed")
	}
	t.Setenv("SOURCE_DATE_EPOCH", "")
	os.Unsetenv("SOURCE_DATE_EPOCH")
	rootfs := rootfsDir(t)
	newest := time.Date(2023, 3, 4, 5, 6, 7, 0, time.UTC)
	for _, p := range []string{"boot/vmlinuz-6.1.0-1-cloud-amd64", "boot", "."} {
		os.Chtimes(filepath.Join(rootfs, p), newest.Add(-time.Hour), newest.Add(-time.Hour))
	}
	os.Chtimes(filepath.Join(rootfs, "boot/vmlinuz-6.1.0-1-cloud-amd64"), newest, newest)
	out := t.TempDir()
	code, stdout, stderr := runCLI(t, nil, "image", "build", "-f", writeSpec(t, smallSpec), "--rootfs", rootfs, "--format", "ova", "-o", out)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	f, err := os.Open(strings.TrimSpace(stdout))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(newest) {
			t.Errorf("OVA member %s dated %v, want the tree's newest time %v", h.Name, h.ModTime.UTC(), newest)
		}
	}
}
