package firstboot

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/firstboot/enroll/enrolltest"
	"github.com/outpost-appliance/outpost/firstboot/sysroot"
	"github.com/outpost-appliance/outpost/provkey"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", p, got, want)
	}
}

func sampleStatuses() map[string]Status {
	exp := time.Date(2027, 11, 22, 22, 0, 0, 0, time.UTC)
	pre := []Check{
		{"vCPU", Pass, "2"}, {"memory", Warn, "2.0 GiB: lab only, unsupported; give the VM 4 GiB for production"},
		{"disk", Pass, "8.0 GiB"}, {"static MAC", Pass, "00:50:56:00:12:34 (VMware manual range)"},
		{"DNS", Pass, "cp.example.com → 203.0.113.7"}, {"TCP 443", Pass, "cp.example.com (203.0.113.7:443) reachable"},
	}
	return map[string]Status{
		"enrolled": {State: StateEnrolled, Name: "Melbourne-1", Group: "Melbourne", ControlPlane: "cp.example.com", CertExpiry: &exp,
			Interface: "ens192", MAC: "00:50:56:00:12:34", Address: "192.0.2.50/24", TimeSkew: "+0.004s", TimeServer: "192.0.2.123", Preflight: append(pre, Check{"TLS pin", Pass, "cp.example.com presents the control plane CA (sha256:0123456789ab…)"})},
		"intercepted": {State: StateFailed, Stage: "preflight", ControlPlane: "cp.example.com", Interface: "ens192", MAC: "00:50:56:00:12:34", Address: "192.0.2.50/24",
			TimeSkew: "+26280h0m0s (corrected)", TimeServer: "192.0.2.123",
			Preflight: append(pre, Check{"TLS pin", Fail, `SSL inspection detected: the certificate for cp.example.com is issued by "Corp SSL Inspection CA"; bypass SSL inspection for connector traffic`}),
			LastError: `preflight failed: TLS pin: SSL inspection detected: the certificate for cp.example.com is issued by "Corp SSL Inspection CA"; bypass SSL inspection for connector traffic`},
		"not_started": {State: StateNotStarted},
		"waiting": {State: StateWaitingKey, Stage: "preflight", Interface: "ens192", MAC: "00:50:56:00:12:34", Address: "192.0.2.50/24",
			TimeError: "no NTP server answered (192.0.2.123: i/o timeout); the clock reads 2026-11-22T22:00:00Z: certificate checks may fail if it is wrong; check that UDP port 123 to these servers is allowed, or set outpost.ntp.servers",
			LastError: ErrNoKey.Error()},
	}
}

func TestStatusGolden(t *testing.T) {
	for name, s := range sampleStatuses() {
		var b bytes.Buffer
		if err := s.WriteText(&b); err != nil {
			t.Fatal(err)
		}
		golden(t, "status-"+name+".txt", b.Bytes())
		golden(t, "banner-"+name+".issue", []byte(s.Banner()))
	}
}

// TestStatusNotStarted: where first boot never ran, the status says so
// rather than "configuring" with a zero time.
func TestStatusNotStarted(t *testing.T) {
	st, err := ReadStatus(sysrootAt(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if st.State != StateNotStarted || !st.Updated.IsZero() {
		t.Errorf("status of a fresh root = %+v", st)
	}
	b, _ := json.Marshal(st)
	if string(b) != `{"state":"not_started"}` {
		t.Errorf("JSON = %s", b)
	}
}

func TestGuestinfoStatus(t *testing.T) {
	cp := newFakeCP(t, "outpost root", 1)
	r := newRig(t, cpKey(t, cp, provkey.PinOf(cp.CA)), cp)
	var cmds []string
	r.env.RPCTool = func(_ context.Context, cmd string) ([]byte, error) {
		cmds = append(cmds, cmd)
		return nil, nil
	}
	if _, err := r.run(); err != nil {
		t.Fatal(err)
	}
	if len(cmds) == 0 || cmds[len(cmds)-1] != "info-set guestinfo.outpost.status enrolled Melbourne-1" {
		t.Errorf("vmware-rpctool commands = %q", cmds)
	}
}

func TestExpiredKeyReason(t *testing.T) {
	cp := enrolltest.New(t, enrolltest.Options{MaxUses: 1, Refuse: "key_expired"})
	r := newRig(t, cpKey(t, cp, provkey.PinOf(cp.CA)), cp)
	_, err := r.run()
	if err == nil || !strings.Contains(err.Error(), "enrollment refused: key_expired — ") {
		t.Fatalf("err = %v", err)
	}
}

// BenchmarkFirstBoot measures first boot's own work (config, files, state,
// key pair, TLS, enrollment against a loopback control plane), with DHCP
// and NTP answered at once: the target is well under a second.
func BenchmarkFirstBoot(b *testing.B) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		cp := enrolltest.New(b, enrolltest.Options{MaxUses: 1})
		r := newRig(b, cpKey(b, cp, provkey.PinOf(cp.CA)), cp)
		b.StartTimer()
		if _, err := r.run(); err != nil {
			b.Fatal(err)
		}
	}
}

// connectProxy is a minimal HTTP CONNECT proxy on loopback.
func connectProxy(t *testing.T) (addr string, tunnels *atomic.Int32) {
	tunnels = new(atomic.Int32)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		up, err := net.Dial("tcp", r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		tunnels.Add(1)
		conn, buf, _ := w.(http.Hijacker).Hijack()
		conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
		go func() { io.Copy(up, buf); up.Close() }()
		io.Copy(conn, up)
		conn.Close()
	}))
	t.Cleanup(srv.Close)
	return srv.URL, tunnels
}

func TestThroughProxy(t *testing.T) {
	cp := newFakeCP(t, "outpost root", 1)
	r := newRig(t, cpKey(t, cp, provkey.PinOf(cp.CA)), cp)
	proxy, tunnels := connectProxy(t)
	r.write(t, "etc/outpost/defaults", "outpost.proxy="+proxy+"\n")
	st, err := r.run()
	if err != nil {
		t.Fatal(err)
	}
	if tunnels.Load() != 2 { // the preflight pin check and the enrollment
		t.Errorf("tunnels through the proxy = %d, want 2", tunnels.Load())
	}
	for _, c := range st.Preflight {
		if c.Name == "TCP 443" || strings.HasPrefix(c.Name, "TCP") {
			if !strings.Contains(c.Detail, "via proxy") {
				t.Errorf("TCP check did not use the proxy: %+v", c)
			}
		}
	}
}

func sysrootAt(t *testing.T, dir string) sysroot.Root {
	t.Helper()
	r, err := sysroot.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
