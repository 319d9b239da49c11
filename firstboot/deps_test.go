package firstboot

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/outpost-appliance/outpost"

// TestDependencies keeps what ships in the appliance (first boot and the
// connector agent) free of the admin side: they may use the key package, the appliance contract, the control
// plane's API types (cpapi), the atomic-write helper (internal/atomicfile,
// standard library only), the bundle format (release) and the installer
// (upgrade), and their own sub-packages, never govmomi, the builder, the
// OVA packer or the control plane.
func TestDependencies(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go command not on PATH")
	}
	cmd := exec.Command("go", "list", "-deps", "-json=ImportPath,Doc,Standard,DepOnly",
		module+"/firstboot/...", module+"/cmd/outpost-firstboot", module+"/connector/...", module+"/cmd/outpost-connector")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = new(strings.Builder)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(out)
	allowed := []string{module + "/firstboot", module + "/cmd/outpost-firstboot", module + "/provkey", module + "/appliance", module + "/cpapi", module + "/internal/atomicfile", module + "/connector", module + "/cmd/outpost-connector", module + "/release", module + "/upgrade"}
	n := 0
	for {
		var p struct {
			ImportPath, Doc   string
			Standard, DepOnly bool
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n++
		if strings.Contains(p.ImportPath, "govmomi") {
			t.Errorf("first boot depends on %s; it ships in the appliance and must not", p.ImportPath)
		}
		if strings.HasPrefix(p.ImportPath, module+"/") {
			ok := false
			for _, a := range allowed {
				if p.ImportPath == a || strings.HasPrefix(p.ImportPath, a+"/") {
					ok = true
				}
			}
			if !ok {
				t.Errorf("first boot depends on %s; only firstboot/..., connector, provkey, appliance, cpapi, release, upgrade and internal/atomicfile may be imported", p.ImportPath)
			}
			if p.Doc == "" {
				t.Errorf("package %s has no package doc comment", p.ImportPath)
			}
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("go list: %v\n%s", err, cmd.Stderr)
	}
	if n < 10 {
		t.Fatalf("go list listed only %d packages", n)
	}
}
