// Package govctest gives tests the real govc client and an in-process vcsim
// (govmomi's vCenter simulator) to run it against. It is for tests only.
package govctest

import (
	"bytes"
	"crypto/tls"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmware/govmomi/simulator"
)

// Govc builds govc (package ./govc, from this module's govmomi) into a
// temporary directory and returns its path. The Go build cache makes every
// build after the first one take a few seconds.
func Govc(tb testing.TB) string {
	tb.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		tb.Fatalf("building govc needs the go command in PATH: %v", err)
	}
	out := filepath.Join(tb.TempDir(), "govc")
	cmd := exec.Command(goBin, "build", "-o", out, "github.com/outpost-appliance/outpost/internal/govctest/govc")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("building govc: %v\n%s", err, b)
	}
	return out
}

// Env is the environment govc needs to reach a simulator.
type Env []string

// Sim is a running simulator.
type Sim struct {
	Env Env      // GOVC_* variables for govc
	URL *url.URL // SDK URL with credentials, for govmomi clients
}

// Simulator starts vcsim's VPX model (a vCenter with one datacenter,
// cluster, hosts, datastore and "VM Network") on a loopback port, stops it
// when tb ends, and returns how to reach it.
func Simulator(tb testing.TB) Sim {
	tb.Helper()
	model := simulator.VPX()
	if err := model.Create(); err != nil {
		tb.Fatalf("creating the vcsim model: %v", err)
	}
	model.Service.TLS = new(tls.Config)
	srv := model.Service.NewServer()
	tb.Cleanup(func() {
		srv.Close()
		model.Remove()
	})
	full := *srv.URL
	u := *srv.URL
	pass, _ := u.User.Password()
	user := u.User.Username()
	u.User = nil
	env := Env{"GOVC_URL=" + u.String(), "GOVC_USERNAME=" + user, "GOVC_PASSWORD=" + pass, "GOVC_INSECURE=1"}
	return Sim{Env: env, URL: &full}
}

// Run runs govc with args under env and returns its standard output; a
// failure ends the test with govc's standard error.
func Run(tb testing.TB, govc string, env Env, args ...string) string {
	tb.Helper()
	cmd := exec.Command(govc, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("govc %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}
