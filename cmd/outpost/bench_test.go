package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/builder"
	"github.com/outpost-appliance/outpost/internal/testtool"
)

// benchDirs are host directories hard-linked (cp -al, no data copied) into
// the benchmark's root filesystem: about 1 GiB of real files, binaries and
// text, many small.
var benchDirs = []string{"/usr/share", "/usr/bin", "/usr/sbin"}

// BenchmarkRootfsToOVA measures issue 4's speed targets in one run: a
// root filesystem of about 1 GiB to an OVA with the built `outpost image
// build` (a subprocess, so its peak RSS is its own), against the
// standard-tool pipeline doing the same work: `mkfs.ext4 -d` into a sparse
// file of the root partition's size, `qemu-img convert` to a
// streamOptimized VMDK, `sha256sum`, `tar`. Reported: speedup (pipeline
// wall time / ours; target ≥ 3), ova-size-ratio (ours / pipeline's; target
// ≤ 1.05) and peak-rss-MiB (target < 256).
func BenchmarkRootfsToOVA(b *testing.B) {
	testtool.Need(b, "mkfs.ext4", "qemu-img", "sha256sum", "tar", "cp", "go", builder.HostBootloader)
	tmp := b.TempDir()
	bin := filepath.Join(tmp, "outpost")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	// The tree must be on the same filesystem as the host dirs for cp -al;
	// b.TempDir is under $TMPDIR, which is on / here.
	rootfs := filepath.Join(tmp, "rootfs")
	usr := filepath.Join(rootfs, "usr")
	if err := os.MkdirAll(usr, 0o755); err != nil {
		b.Fatal(err)
	}
	for _, d := range benchDirs {
		if out, err := exec.Command("cp", "-al", d, usr).CombinedOutput(); err != nil {
			b.Skipf("cp -al %s (needs the same filesystem as the temp dir): %v\n%s", d, err, out)
		}
	}
	boot := filepath.Join(rootfs, "boot")
	if err := os.MkdirAll(boot, 0o755); err != nil {
		b.Fatal(err)
	}
	// A kernel-sized file: 8 MiB that does not compress, as a bzImage. The
	// ESP holds a second copy, which the pipeline does not make.
	kernel := make([]byte, 8<<20)
	rand.NewChaCha8([32]byte{1}).Read(kernel)
	if err := os.WriteFile(filepath.Join(boot, "vmlinuz-6.1.0-28-cloud-amd64"), kernel, 0o644); err != nil {
		b.Fatal(err)
	}
	du, err := exec.Command("du", "-sb", rootfs).Output()
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("root filesystem: %s", strings.Fields(string(du))[0]+" bytes")

	spec := filepath.Join(tmp, "image.yaml")
	if err := os.WriteFile(spec, []byte("name: bench\nversion: '1'\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	// The default 8 GiB disk: the root partition is what Build gives it.
	const diskSize = 8 << 30
	partSize := int64(diskSize-33*512)/(1<<20)*(1<<20) - (1<<20 + 256<<20)

	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Standard-tool pipeline.
		pdir := filepath.Join(tmp, fmt.Sprintf("pipeline-%d", i))
		if err := os.MkdirAll(pdir, 0o755); err != nil {
			b.Fatal(err)
		}
		part := filepath.Join(pdir, "root.img")
		vmdk := filepath.Join(pdir, "bench-disk1.vmdk")
		start := time.Now()
		run := func(dir string, name string, args ...string) string {
			cmd := exec.Command(name, args...)
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			if err != nil {
				b.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
			}
			return string(out)
		}
		if err := os.WriteFile(part, nil, 0o644); err != nil {
			b.Fatal(err)
		}
		if err := os.Truncate(part, partSize); err != nil {
			b.Fatal(err)
		}
		run(pdir, "mkfs.ext4", "-q", "-F", "-d", rootfs, part)
		run(pdir, "qemu-img", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized", part, vmdk)
		sum := run(pdir, "sha256sum", "bench-disk1.vmdk")
		ovf := "<?xml version=\"1.0\"?><Envelope/>\n"
		if err := os.WriteFile(filepath.Join(pdir, "bench.ovf"), []byte(ovf), 0o644); err != nil {
			b.Fatal(err)
		}
		mf := "SHA256(bench-disk1.vmdk)= " + strings.Fields(sum)[0] + "\n"
		if err := os.WriteFile(filepath.Join(pdir, "bench.mf"), []byte(mf), 0o644); err != nil {
			b.Fatal(err)
		}
		run(pdir, "tar", "-cf", "bench.ova", "bench.ovf", "bench.mf", "bench-disk1.vmdk")
		pipeline := time.Since(start)
		pfi, err := os.Stat(filepath.Join(pdir, "bench.ova"))
		if err != nil {
			b.Fatal(err)
		}
		os.RemoveAll(pdir) // free the space before our run

		// outpost image build.
		odir := filepath.Join(tmp, fmt.Sprintf("outpost-%d", i))
		start = time.Now()
		cmd := exec.Command(bin, "image", "build", "-f", spec, "--rootfs", rootfs, "--format", "ova", "-o", odir)
		cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1700000000")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("outpost image build: %v\n%s", err, out)
		}
		ours := time.Since(start)
		rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss // KiB: VmHWM
		ofi, err := os.Stat(filepath.Join(odir, "bench-1.ova"))
		if err != nil {
			b.Fatal(err)
		}
		os.RemoveAll(odir)

		b.Logf("pipeline %v (OVA %d bytes), outpost %v (OVA %d bytes, peak RSS %d MiB)",
			pipeline.Round(time.Millisecond), pfi.Size(), ours.Round(time.Millisecond), ofi.Size(), rss>>10)
		b.ReportMetric(pipeline.Seconds()/ours.Seconds(), "speedup")
		b.ReportMetric(float64(ofi.Size())/float64(pfi.Size()), "ova-size-ratio")
		b.ReportMetric(float64(rss)/1024, "peak-rss-MiB")
		b.ReportMetric(pipeline.Seconds(), "pipeline-s")
		b.ReportMetric(ours.Seconds(), "outpost-s")
	}
}
