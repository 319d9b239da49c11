package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/imagebuild"
	"github.com/outpost-appliance/outpost/internal/testtool"
	"github.com/outpost-appliance/outpost/qemu"
	"github.com/outpost-appliance/outpost/release"
)

var keepImage = flag.Bool("keep", false, "keep the built appliance image (its path is printed)")

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if imagePath != "" {
		if *keepImage {
			fmt.Fprintf(os.Stderr, "e2e: appliance image kept: %s\n", imagePath)
		} else {
			os.RemoveAll(filepath.Dir(imagePath))
		}
	}
	if bundleDir != "" {
		os.RemoveAll(bundleDir)
	}
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// The appliance's network in the test's namespace.
const (
	hostIP  = "10.88.0.1"
	cpName  = "cp.lab.test"
	cpPort  = "8443"
	netCIDR = "10.88.0.0/24"
	// testPassword is root's password at the console, given as a hash.
	testPassword = "outpost"
)

var (
	// releaseKey signs the test releases; releasePub is its public key's
	// file, which the appliance image and the control plane trust.
	releaseKey ed25519.PrivateKey
	releasePub string

	imageOnce sync.Once
	imagePath string
	imageErr  error
	binOnce   sync.Once
	binPath   string
	binErr    error
)

// cacheDir keeps the Debian root filesystem between runs on this machine.
func cacheDir() string {
	if d := os.Getenv("OUTPOST_TEST_CACHE"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "outpost-test-cache", "rootfs")
}

// applianceImage builds the connector appliance from the embedded spec
// once per test binary (the root filesystem comes from the cache after the
// first run) and returns its qcow2.
func applianceImage(t testing.TB) string {
	t.Helper()
	testtool.Need(t, "mmdebstrap", qemu.System, qemu.Img, qemu.OVMFCode)
	imageOnce.Do(func() {
		dir, err := os.MkdirTemp("", "outpost-e2e-image-*")
		if err != nil {
			imageErr = err
			return
		}
		priv, pub, err := release.GenerateKey()
		if err == nil {
			releaseKey, err = release.ParsePrivateKey(priv)
		}
		if err != nil {
			imageErr = err
			return
		}
		releasePub = filepath.Join(dir, "release.pub")
		if imageErr = os.WriteFile(releasePub, pub, 0o644); imageErr != nil {
			return
		}
		var log bytes.Buffer
		wd, _ := os.Getwd()
		start := time.Now()
		imagePath, imageErr = imagebuild.ConnectorQCOW2(context.Background(), imagebuild.Request{
			OutDir: dir, Log: &log, CacheDir: cacheDir(), ModuleDir: filepath.Dir(wd), SourceDateEpoch: "1767225600", ReleaseKey: releaseKey})
		if imageErr != nil {
			imageErr = fmt.Errorf("building the appliance: %v\n%s", imageErr, log.String())
			return
		}
		fmt.Fprintf(os.Stderr, "e2e: appliance image built in %s\n", time.Since(start).Round(time.Second))
	})
	if imageErr != nil {
		t.Fatal(imageErr)
	}
	return imagePath
}

// outpostBin builds this tree's outpost CLI once.
func outpostBin(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "outpost-e2e-bin-*")
		if err != nil {
			binErr = err
			return
		}
		// Readable by others: a test runs it as an unprivileged user too.
		os.Chmod(dir, 0o755)
		binPath = filepath.Join(dir, "outpost")
		cmd := exec.Command("go", "build", "-o", binPath, "../cmd/outpost")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("build outpost: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// lab is a network namespace holding a tap for the VMs with DHCP, DNS
// (cp.lab.test) and NTP on it, and the real control plane.
type lab struct {
	t      testing.TB
	ns     string
	tap    string // the first VM's tap
	bridge string
	taps   int
	// machines counts the VMs started with lab.machine.
	machines int
	dir      string
	admin    string
	bin      string
}

func sh(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newLab starts the lab; serverArgs are added to outpost server's.
func newLab(t testing.TB, serverArgs ...string) *lab {
	t.Helper()
	if os.Geteuid() != 0 {
		testtool.Missing(t, "root (network namespaces and taps)")
	}
	testtool.Need(t, "ip", "dnsmasq", "chronyd")
	id := fmt.Sprintf("%d", os.Getpid()%100000)
	l := &lab{t: t, ns: "oe2e" + id, tap: "oetap" + id, dir: t.TempDir(), bin: outpostBin(t)}
	sh(t, "ip", "netns", "add", l.ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", l.ns).Run() })
	sh(t, "ip", "-n", l.ns, "link", "set", "lo", "up")
	// A bridge holds the address; each VM has a tap on it (a tap takes
	// one QEMU).
	l.bridge = "oebr" + id
	sh(t, "ip", "-n", l.ns, "link", "add", l.bridge, "type", "bridge")
	sh(t, "ip", "-n", l.ns, "addr", "add", hostIP+"/24", "dev", l.bridge)
	sh(t, "ip", "-n", l.ns, "link", "set", l.bridge, "up")
	l.addTap(l.tap)

	l.start("dnsmasq", "dnsmasq", "--no-daemon", "--no-ping", "--conf-file=/dev/null", "--interface="+l.bridge, "--bind-interfaces",
		"--no-resolv", "--no-hosts", "--host-record="+cpName+","+hostIP, "--dhcp-leasefile="+filepath.Join(l.dir, "leases"),
		"--dhcp-range=10.88.0.50,10.88.0.99,255.255.255.0,1h", "--dhcp-option=option:router,"+hostIP,
		"--dhcp-option=option:dns-server,"+hostIP, "--dhcp-option=option:ntp-server,"+hostIP,
		"--dhcp-option=option:domain-search,lab.test", "--log-dhcp")
	conf := filepath.Join(l.dir, "chrony.conf")
	pid := filepath.Join(l.dir, "chronyd.pid")
	os.WriteFile(conf, []byte(fmt.Sprintf("allow %s\nlocal stratum 8\npidfile %s\ncmdport 0\nbindcmdaddress /\ndriftfile %s\n", netCIDR, pid, filepath.Join(l.dir, "drift"))), 0o644)
	l.start("chronyd", "chronyd", "-f", conf, "-x", "-d", "-u", "root")

	data := filepath.Join(l.dir, "cp")
	l.start("server", append([]string{l.bin, "server", "--data", data, "--listen", hostIP + ":" + cpPort, "--hostname", cpName + ":" + cpPort}, serverArgs...)...)
	l.admin = filepath.Join(data, "admin.conf")
	waitFor(t, "the control plane", 20*time.Second, func() bool {
		_, err := os.Stat(l.admin)
		return err == nil && l.try("groups", "list") == nil
	})
	return l
}

// addTap adds a tap to the lab's bridge.
func (l *lab) addTap(name string) {
	l.t.Helper()
	sh(l.t, "ip", "-n", l.ns, "tuntap", "add", name, "mode", "tap")
	sh(l.t, "ip", "-n", l.ns, "link", "set", name, "master", l.bridge)
	sh(l.t, "ip", "-n", l.ns, "link", "set", name, "up")
}

// newTap adds another tap for another VM running at the same time.
func (l *lab) newTap() string {
	l.t.Helper()
	l.taps++
	name := fmt.Sprintf("%s-%d", l.tap, l.taps)
	l.addTap(name)
	return name
}

// start runs a program in the namespace, stopped by PID when the test ends.
func (l *lab) start(name string, args ...string) {
	t := l.t
	t.Helper()
	logf, _ := os.Create(filepath.Join(l.dir, name+".log"))
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.ns}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("%s log (last 3000 bytes):\n%s", name, tail(string(b), 3000))
		}
	})
}

func (l *lab) try(args ...string) error {
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.ns, l.bin}, append(args, "--config", l.admin, "--server", "https://"+hostIP+":"+cpPort)...)...)
	return cmd.Run()
}

// outpost runs an admin command against the lab's control plane.
func (l *lab) outpost(args ...string) string {
	l.t.Helper()
	out, err := l.output(args...)
	if err != nil {
		l.t.Fatalf("outpost %v: %v", args, err)
	}
	return out
}

// output runs an admin command and returns its output, or an error with
// what it printed to stderr.
func (l *lab) output(args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.ns, l.bin}, append(args, "--config", l.admin, "--server", "https://"+hostIP+":"+cpPort)...)...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%v\n%s", err, errb.String())
	}
	return strings.TrimSpace(string(out)), nil
}

// key creates a group and a key with maxUses and returns its text.
func (l *lab) key(name string, maxUses int) string {
	l.outpost("groups", "create", strings.ToLower(name))
	return l.outpost("keys", "create", "--name", name, "--group", strings.ToLower(name), "--max-uses", fmt.Sprint(maxUses))
}

func (l *lab) connectors() []cpapi.Connector {
	var cs []cpapi.Connector
	if err := json.Unmarshal([]byte(l.outpost("connectors", "list", "--json")), &cs); err != nil {
		l.t.Fatal(err)
	}
	return cs
}

func (l *lab) connector(name string) (cpapi.Connector, bool) {
	for _, c := range l.connectors() {
		if c.Name == name {
			return c, true
		}
	}
	return cpapi.Connector{}, false
}

// uses is the key's utilization count.
func (l *lab) uses(key string) int64 {
	var ki cpapi.KeyInfo
	if err := json.Unmarshal([]byte(l.outpost("keys", "show", key, "--json")), &ki); err != nil {
		l.t.Fatal(err)
	}
	return ki.UseCount
}

// vm starts a VM of the appliance on the lab's tap.
func (l *lab) vm(name, mac string, fwcfg map[string]string, iso string) *qemu.VM {
	l.t.Helper()
	return l.startVM(l.vmConfig(name, mac, fwcfg, iso))
}

// vmConfig is the configuration of a VM of the appliance on the lab's tap.
func (l *lab) vmConfig(name, mac string, fwcfg map[string]string, iso string) qemu.Config {
	t := l.t
	t.Helper()
	dir := filepath.Join(l.dir, "vm-"+name)
	cfg := qemu.Config{Name: name, Base: applianceImage(t), Dir: dir, MemoryMiB: 2048, MAC: mac, Tap: l.tap,
		Prefix: []string{"ip", "netns", "exec", l.ns}, CDROM: iso, FwCfg: map[string]string{}}
	for k, v := range fwcfg {
		f := filepath.Join(l.dir, name+"-"+strings.ReplaceAll(k, "/", "_"))
		if err := os.WriteFile(f, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg.FwCfg[k] = f
	}
	return cfg
}

// startVM starts QEMU for cfg, stopped (and its console shown if the test
// failed) when the test ends.
func (l *lab) startVM(cfg qemu.Config) *qemu.VM {
	t := l.t
	t.Helper()
	vm, err := qemu.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: QEMU pid %d (%s), MAC %s", cfg.Name, vm.PID(), vm.Accel, cfg.MAC)
	t.Cleanup(func() {
		vm.Stop()
		if t.Failed() {
			t.Logf("%s serial console (last 6000 bytes):\n%s", cfg.Name, tail(vm.Serial(), 6000))
		}
	})
	return vm
}

// restart stops a VM and starts it again on the same disk, with mac.
func (l *lab) restart(vm *qemu.VM, mac string) *qemu.VM {
	l.t.Helper()
	vm.Stop()
	cfg := vm.Config
	cfg.MAC = mac
	nv, err := qemu.Start(context.Background(), cfg)
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(nv.Stop)
	return nv
}

func waitFor(t testing.TB, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitSerial waits until the serial log, after offset, matches re.
func waitSerial(t testing.TB, vm *qemu.VM, offset int, re string, d time.Duration) {
	t.Helper()
	rx := regexp.MustCompile(re)
	waitFor(t, fmt.Sprintf("%q on %s's serial console", re, vm.Name), d, func() bool {
		s := vm.Serial()
		return len(s) > offset && rx.MatchString(s[offset:])
	})
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// console is a login session on the serial console.
type console struct {
	t    testing.TB
	conn net.Conn
	mu   sync.Mutex // guards buf, which the reader goroutine fills
	buf  bytes.Buffer
}

func login(t testing.TB, vm *qemu.VM) *console {
	t.Helper()
	conn, err := vm.Console()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &console{t: t, conn: conn}
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := conn.Read(b)
			if n > 0 {
				c.mu.Lock()
				c.buf.Write(b[:n])
				c.mu.Unlock()
			}
			if err != nil {
				return
			}
		}
	}()
	for i := 0; ; i++ {
		c.send("\r")
		if c.waitFor("login: ", 3*time.Second) {
			break
		}
		if i == 40 {
			t.Fatalf("no login prompt on %s's serial console:\n%s", vm.Name, tail(vm.Serial(), 3000))
		}
	}
	c.send("root\r")
	if !c.waitFor("Password: ", 10*time.Second) {
		t.Fatalf("no password prompt:\n%s", tail(c.text(), 2000))
	}
	c.send(testPassword + "\r")
	if !c.waitFor("# ", 20*time.Second) {
		t.Fatalf("no shell after logging in as root:\n%s", tail(c.text(), 2000))
	}
	return c
}

func (c *console) text() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

func (c *console) send(s string) {
	if _, err := c.conn.Write([]byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

// waitFor reports whether s appeared in the output since the last call.
func (c *console) waitFor(s string, d time.Duration) bool {
	_, ok := c.upTo(s, d)
	return ok
}

// upTo waits for s and returns the output before it, consuming both.
func (c *console) upTo(s string, d time.Duration) (string, bool) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		i := strings.Index(c.buf.String(), s)
		if i >= 0 {
			before := string(c.buf.Next(i))
			c.buf.Next(len(s))
			c.mu.Unlock()
			return before, true
		}
		c.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	}
	return "", false
}

// run runs a shell command, waits for a marker after it and returns what it
// printed (with the echoed command line).
func (c *console) run(cmd string, d time.Duration) string {
	c.t.Helper()
	mark := fmt.Sprintf("done-%d", time.Now().UnixNano())
	c.send(cmd + "; echo " + mark[:5] + "${x}" + mark[5:] + "\r")
	out, ok := c.upTo(mark, d)
	if !ok {
		c.t.Fatalf("%q did not finish:\n%s", cmd, tail(c.text(), 2000))
	}
	return out
}
