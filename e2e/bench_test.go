package e2e

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/appliance"
)

// BenchmarkPowerOnToEnrolled boots the appliance (key through fw_cfg) and
// reports, from QEMU's start: the first kernel line on the serial console,
// first boot starting, the appliance enrolled (first boot's own line), and
// the control plane's first heartbeat; and first boot's own work, from its
// start to enrolled, in the guest's clock. The goal is enrolled within 20 s
// under TCG and first boot's work under 1 s.
func BenchmarkPowerOnToEnrolled(b *testing.B) {
	l := newLab(b)
	key := l.key("Bench", b.N)
	applianceImage(b)
	var firstboot, enrolled, heartbeat time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		vm := l.vm("bench"+strconv.Itoa(i), "00:50:56:00:eb:"+strconv.FormatInt(int64(0x10+i), 16), fwcfg(map[string]string{appliance.PropProvisionKey: key}), "")
		name := "Bench-" + strconv.Itoa(i+1)
		l.healthy(name, start, 4*time.Minute)
		heartbeat += time.Since(start)
		s := vm.Serial()
		// Kernel timestamps: when first boot started and when it said it
		// had enrolled, since the kernel started.
		fbStart := kernelTime(s, `outpost-firstboot\[\d+\]: .*outpost-firstboot starting`)
		fbDone := kernelTime(s, `outpost-firstboot\[\d+\]: enrolled as `)
		if fbStart < 0 || fbDone < 0 {
			b.Fatalf("first boot's lines not found on the serial console")
		}
		firstboot += fbDone - fbStart
		enrolled += fbDone
		vm.Stop()
	}
	n := time.Duration(b.N)
	b.ReportMetric((enrolled / n).Seconds(), "s-kernel-to-enrolled")
	b.ReportMetric((heartbeat / n).Seconds(), "s-poweron-to-heartbeat")
	b.ReportMetric((firstboot / n).Seconds(), "s-firstboot-work")
	b.Logf("kernel start → enrolled %.1f s (goal 20 s); power-on → first heartbeat seen by the control plane %.1f s; first boot's own work %.2f s (goal 1 s); accelerator %s",
		(enrolled / n).Seconds(), (heartbeat / n).Seconds(), (firstboot / n).Seconds(), "tcg unless /dev/kvm works")
}

// kernelTime finds re on the serial console and returns the kernel
// timestamp ([   12.345678]) of that line, or -1.
func kernelTime(serial, re string) time.Duration {
	m := regexp.MustCompile(`\[\s*(\d+\.\d+)\] ` + re).FindStringSubmatch(serial)
	if m == nil {
		return -1
	}
	f, _ := strconv.ParseFloat(m[1], 64)
	return time.Duration(f * float64(time.Second))
}
