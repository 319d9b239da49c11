package disktest

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/internal/testtool"
)

// MakeMixed builds a raw disk of size bytes laid out like a filesystem
// image of a real root: about data bytes of file contents taken from the
// system directories (/usr/lib, then /usr/share; in lexical order, at most
// 8 MiB per file, 4 KiB aligned), a 16 MiB hole after every 64 MiB of
// files, a 24 MiB region of written zeros (as mkfs leaves in inode tables),
// and holes elsewhere. It is deterministic on a given machine, and is what
// the writer benchmarks convert.
func MakeMixed(tb testing.TB, size, data int64) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "mixed.raw")
	f, err := os.Create(p)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		tb.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 24*mib), 1*mib); err != nil {
		tb.Fatal(err)
	}
	off, written, nextHole := int64(25*mib), int64(0), int64(64*mib)
	limit := min(data, size-off-16*mib)
	copyFile := func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil // unreadable or special: skip, as a copy would
		}
		if written >= limit || off+8*mib > size {
			return filepath.SkipAll
		}
		src, err := os.Open(path)
		if err != nil {
			return nil
		}
		defer src.Close()
		n, _ := io.Copy(io.NewOffsetWriter(f, off), io.LimitReader(src, min(8*mib, limit-written)))
		written += n
		off += (n + 4095) &^ 4095
		if written >= nextHole {
			off += 16 * mib
			nextHole += 64 * mib
		}
		return nil
	}
	for _, root := range []string{"/usr/lib", "/usr/share"} {
		filepath.WalkDir(root, copyFile)
	}
	if written < limit/2 {
		tb.Fatalf("mixed disk: found only %d bytes of files under /usr", written)
	}
	return p
}

// Bench measures a writer against a reference command on the same disk in
// the same run, and reports:
//
//	speedup-x      reference wall time / ours
//	cpu-saving-x   reference CPU time / ours (not skewed by a busy machine)
//	size-ratio     our output size / reference output size
//	peak-heap-MiB  most heap in objects while ours ran, sampled every 20 ms
//	VmHWM-MiB      the test process's peak resident set size
//
// write converts src to dst; ref is the reference command line with the
// placeholders SRC and DST. The two run alternately, three times each, and
// the fastest run of each counts: the machine is shared, and the minimum is
// the least disturbed measurement of both.
func Bench(b *testing.B, src string, write func(dst, src string) error, ref ...string) {
	b.Helper()
	const rounds = 3
	dir := b.TempDir()
	refOut, ours := filepath.Join(dir, "ref.out"), filepath.Join(dir, "ours.out")
	args := make([]string, len(ref)-1)
	for i, a := range ref[1:] {
		switch a {
		case "SRC":
			a = src
		case "DST":
			a = refOut
		}
		args[i] = a
	}
	tool := testtool.Path(b, ref[0])

	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		// runtime/metrics, unlike ReadMemStats, does not stop the world.
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	refTime, oursTime := time.Duration(1<<62), time.Duration(1<<62)
	refCPU, oursCPU := time.Duration(1<<62), time.Duration(1<<62)
	b.ResetTimer()
	for b.Loop() {
		for range rounds {
			b.StopTimer()
			start := time.Now()
			cmd := exec.Command(tool, args...)
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("%s: %v\n%s", strings.Join(ref, " "), err, out)
			}
			refTime = min(refTime, time.Since(start))
			refCPU = min(refCPU, cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())
			b.StartTimer()
			start, cpu0 := time.Now(), selfCPU()
			if err := write(ours, src); err != nil {
				b.Fatal(err)
			}
			oursTime = min(oursTime, time.Since(start))
			oursCPU = min(oursCPU, selfCPU()-cpu0)
		}
	}
	b.StopTimer()
	close(stop)
	<-sampled
	size := func(p string) float64 {
		fi, err := os.Stat(p)
		if err != nil {
			b.Fatal(err)
		}
		return float64(fi.Size())
	}
	b.ReportMetric(refTime.Seconds()/oursTime.Seconds(), "speedup-x")
	b.ReportMetric(refCPU.Seconds()/oursCPU.Seconds(), "cpu-saving-x")
	b.ReportMetric(size(ours)/size(refOut), "size-ratio")
	b.ReportMetric(float64(peak.Load())/mib, "peak-heap-MiB")
	b.ReportMetric(vmHWM()/mib, "VmHWM-MiB")
	b.Logf("best of %d: %s %v (CPU %v), %.0f bytes; ours %v (CPU %v), %.0f bytes", rounds,
		ref[0], refTime.Round(time.Millisecond), refCPU.Round(time.Millisecond), size(refOut),
		oursTime.Round(time.Millisecond), oursCPU.Round(time.Millisecond), size(ours))
}

// selfCPU is the CPU time (user and system) this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// vmHWM is the process's peak resident set size in bytes.
func vmHWM() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(v), "%f", &kb)
			return kb * 1024
		}
	}
	return 0
}
