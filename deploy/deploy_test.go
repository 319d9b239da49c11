package deploy

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmware/govmomi/simulator"
	_ "github.com/vmware/govmomi/vapi/simulator" // content libraries in vcsim

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/artifact"
	"github.com/outpost-appliance/outpost/builder"
	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/images"
	"github.com/outpost-appliance/outpost/internal/govctest"
	"github.com/outpost-appliance/outpost/provkey"
)

// testOVA writes the shipped spec's OVA around a small blank disk, as
// `outpost image build` would; noProps leaves the properties out.
func testOVA(t *testing.T, noProps bool) string {
	t.Helper()
	spec, _, err := builder.ParseSpec(images.ConnectorPath, images.Connector)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(raw, []byte("outpost test disk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(raw, 4<<20); err != nil {
		t.Fatal(err)
	}
	m, err := spec.MAC()
	if err != nil {
		t.Fatal(err)
	}
	job := &artifact.Job{Spec: spec, MAC: m, RawPath: raw, Epoch: time.Unix(0, 0)}
	defer job.Close()
	ova, _ := artifact.Lookup("ova")
	dst := filepath.Join(dir, "outpost.ova")
	if err := ova.Write(context.Background(), job, dst); err != nil {
		t.Fatal(err)
	}
	if noProps {
		return stripProperties(t, dst)
	}
	return dst
}

// stripProperties rewrites an OVA without its ProductSection.
func stripProperties(t *testing.T, src string) string {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	dst := strings.TrimSuffix(src, ".ova") + "-plain.ova"
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	tr, tw := tar.NewReader(in), tar.NewWriter(out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(h.Name, ".ovf") {
			b = regexp.MustCompile(`(?s)<ProductSection.*</ProductSection>`).ReplaceAll(b, nil)
			h.Size = int64(len(b))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// vmInfo is govc vm.info -e -json, compacted.
func vmInfo(t *testing.T, govc string, env govctest.Env, name string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(govctest.Run(t, govc, env, "vm.info", "-e", "-json", name))); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

type sim struct {
	conn     Connection
	env      govctest.Env
	uploaded *atomic.Int64 // bytes PUT/POSTed to /nfc/
	uploads  *atomic.Int64
}

// startSim runs a vcsim model in-process behind a handler that counts the
// bytes uploaded through NFC.
func startSim(t *testing.T, model *simulator.Model) sim {
	t.Helper()
	if err := model.Create(); err != nil {
		t.Fatal(err)
	}
	model.Service.TLS = new(tls.Config)
	model.Service.RegisterEndpoints = true // the vAPI: content libraries
	// A user and password of its own: the simulator then refuses others.
	model.Service.Listen = &url.URL{Host: "127.0.0.1:0", User: url.UserPassword("admin", "s3cret-pass")}
	srv := model.Service.NewServer()
	t.Cleanup(func() { srv.Close(); model.Remove() })
	s := sim{uploaded: new(atomic.Int64), uploads: new(atomic.Int64)}
	inner := srv.Server.Config.Handler
	srv.Server.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A disk through NFC (import), or any file but the descriptor into
		// a content library item.
		disk := strings.HasPrefix(r.URL.Path, "/nfc/") || strings.Contains(r.URL.Path, "/com/vmware/cis/data/") && !strings.HasSuffix(r.URL.Path, ".ovf")
		if disk && (r.Method == http.MethodPut || r.Method == http.MethodPost) {
			s.uploads.Add(1)
			r.Body = countBody{r.Body, s.uploaded}
		}
		inner.ServeHTTP(w, r)
	})
	u := *srv.URL
	pass, _ := u.User.Password()
	user := u.User.Username()
	u.User = nil
	s.conn = Connection{URL: u.String(), Username: user, Password: pass, Insecure: true}
	s.env = govctest.Env{"GOVC_URL=" + u.String(), "GOVC_USERNAME=" + user, "GOVC_PASSWORD=" + pass, "GOVC_INSECURE=1"}
	return s
}

type countBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b countBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

func testKey(t *testing.T) provkey.Key {
	k, err := provkey.Generate("cp.example.com", provkey.Pin{1, 2, 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func run(t *testing.T, cfg Config, dry bool) (*Plan, *Result, error) {
	t.Helper()
	ctx := context.Background()
	if _, err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	s, err := Connect(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	defer s.Close(ctx) //nolint:errcheck
	p, err := s.Plan(ctx)
	if err != nil || dry {
		return p, nil, err
	}
	r, err := s.Apply(ctx, p)
	return p, r, err
}

func TestVCenterPair(t *testing.T) {
	model := simulator.VPX()
	model.ClusterHost = 2
	s := startSim(t, model)
	govc := govctest.Govc(t)
	ova := testOVA(t, false)
	key := testKey(t)
	cfg := Config{Conn: s.conn, Cluster: "DC0_C0", Network: "VM Network", OVA: ova, Key: key, Name: "Melbourne", Count: 2,
		Net: Network{IPs: []string{"192.0.2.10/24", "192.0.2.11/24"}, Gateway: "192.0.2.1", DNS: []string{"192.0.2.53"}}}

	// Dry run: a plan, nothing made.
	p, _, err := run(t, cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	if p.API != APIvCenter || p.Rule != "outpost-Melbourne" || len(p.VMs) != 2 || p.VMs[0].Host == p.VMs[1].Host {
		t.Fatalf("plan %+v", p)
	}
	if got := p.VMs[0].Properties[appliance.PropProvisionKey]; got != key.Redacted() || strings.Contains(got, key.Reveal()) {
		t.Errorf("plan shows key %q, want redacted", got)
	}
	if out := govctest.Run(t, govc, s.env, "ls", "/DC0/vm"); strings.Contains(out, "Melbourne") {
		t.Fatalf("dry run made VMs:\n%s", out)
	}

	_, r, err := run(t, cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	if s.uploads.Load() != 1 || r.UploadedBytes == 0 || r.UploadedBytes != s.uploaded.Load() {
		t.Errorf("%d uploads, %d bytes counted by the server, %d reported: want one upload for a pair", s.uploads.Load(), s.uploaded.Load(), r.UploadedBytes)
	}
	for i, v := range p.VMs {
		info := vmInfo(t, govc, s.env, v.Name)
		for _, want := range []string{`"firmware":"efi"`, `"numCPU":2`, `"memoryMB":4096`, TagName, `"powerState":"poweredOn"`, appliance.PropIPv4Address, p.VMs[i].props[appliance.PropIPv4Address], key.Reveal()} {
			if !strings.Contains(info, want) {
				t.Errorf("%s: vm.info lacks %s", v.Name, want)
				if os.Getenv("DEBUG") != "" {
					t.Log(info)
				}
			}
		}
		dev := govctest.Run(t, govc, s.env, "device.info", "-vm", v.Name, "ethernet-*")
		if !strings.Contains(dev, appliance.DeriveMAC(v.Name).String()) {
			t.Errorf("%s: device.info has no MAC %s:\n%s", v.Name, appliance.DeriveMAC(v.Name), dev)
		}
	}
	rules := govctest.Run(t, govc, s.env, "cluster.rule.ls", "-cluster", "DC0_C0", "-name", "outpost-Melbourne")
	if !strings.Contains(rules, "Melbourne-1") || !strings.Contains(rules, "Melbourne-2") {
		t.Errorf("cluster.rule.ls:\n%s", rules)
	}

	// Rerun: powers on the one that is off, uploads nothing.
	govctest.Run(t, govc, s.env, "vm.power", "-off", "Melbourne-2")
	_, r, err = run(t, cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Created) != 0 || !slices.Equal(r.PoweredOn, []string{"Melbourne-2"}) || r.UploadedBytes != 0 || s.uploads.Load() != 1 {
		t.Errorf("rerun: %+v, %d uploads", r, s.uploads.Load())
	}

	// A stray VM keeps its place; destroy removes only what deploy made.
	govctest.Run(t, govc, s.env, "vm.create", "-on=false", "-net", "VM Network", "-host", "DC0_C0_H0", "stray")
	ctx := context.Background()
	sess, err := Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	gone, err := sess.Destroy(ctx)
	sess.Close(ctx) //nolint:errcheck
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(gone)
	if want := []string{"Melbourne-1", "Melbourne-2", "Melbourne-template", "rule outpost-Melbourne"}; !slices.Equal(gone, want) {
		t.Errorf("destroy removed %q, want %q", gone, want)
	}
	out := govctest.Run(t, govc, s.env, "find", "/DC0/vm", "-type", "m")
	if strings.Contains(out, "Melbourne") || !strings.Contains(out, "stray") || !strings.Contains(out, "DC0_C0_RP0_VM0") {
		t.Errorf("after destroy:\n%s", out)
	}
}

func TestESXiPair(t *testing.T) {
	s := startSim(t, simulator.ESX())
	govc := govctest.Govc(t)
	key := testKey(t)
	cfg := Config{Conn: s.conn, OVA: testOVA(t, false), Key: key, Name: "Sydney", Count: 2}
	p, r, err := run(t, cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	if p.API != APIESXi || p.Rule != "" || len(p.Warnings) == 0 || !strings.Contains(p.Warnings[0], "single host") {
		t.Errorf("plan: %+v", p)
	}
	if s.uploads.Load() != 1 || r.UploadedBytes != s.uploaded.Load() {
		t.Errorf("%d uploads, %d bytes; reported %d", s.uploads.Load(), s.uploaded.Load(), r.UploadedBytes)
	}
	for _, v := range p.VMs {
		info := vmInfo(t, govc, s.env, v.Name)
		for _, want := range []string{`"firmware":"efi"`, OVFEnvVar, "outpost.provision_key", strings.ToLower(v.Name)} {
			if !strings.Contains(info, want) {
				t.Errorf("%s: vm.info lacks %s", v.Name, want)
				if os.Getenv("DEBUG") != "" {
					t.Log(info)
				}
			}
		}
		if !strings.Contains(govctest.Run(t, govc, s.env, "device.info", "-vm", v.Name, "ethernet-*"), appliance.DeriveMAC(v.Name).String()) {
			t.Errorf("%s: no MAC %s", v.Name, appliance.DeriveMAC(v.Name))
		}
		if !strings.Contains(govctest.Run(t, govc, s.env, "device.info", "-vm", v.Name, "disk-*"), v.Name+"/") {
			t.Errorf("%s: the disk is not its own copy", v.Name)
		}
	}
}

func TestBadInput(t *testing.T) {
	model := simulator.VPX()
	model.ClusterHost = 2
	s := startSim(t, model)
	ova := testOVA(t, false)
	base := Config{Conn: s.conn, Cluster: "DC0_C0", Network: "VM Network", OVA: ova, Key: testKey(t), Name: "Perth", Count: 2}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   []string
		is     error
	}{
		{"password", func(c *Config) { c.Conn.Password = "hunter2-wrong" }, []string{"GOVC_PASSWORD"}, ErrLogin},
		{"datacenter", func(c *Config) { c.Datacenter = "DC9" }, []string{`"DC9"`, "DC0"}, ErrNotFound},
		{"datastore", func(c *Config) { c.Datastores = []string{"nope"} }, []string{`"nope"`, "LocalDS_0"}, ErrNotFound},
		{"network", func(c *Config) { c.Network = "nope" }, []string{`"nope"`, "VM Network"}, ErrNotFound},
		{"not an appliance", func(c *Config) { c.OVA = testOVA(t, true) }, []string{appliance.PropProvisionKey}, ErrNotAppliance},
		{"collision", func(c *Config) { c.Name = "collide" }, []string{"collide-1", appliance.DeriveMAC("collide-1").String()}, ErrMACCollision},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "collision" {
				govc := govctest.Govc(t)
				govctest.Run(t, govc, s.env, "vm.create", "-on=false", "-net", "VM Network", "-host", "DC0_C0_H0", "other")
				govctest.Run(t, govc, s.env, "vm.network.change", "-vm", "other", "-net", "VM Network", "-net.address", appliance.DeriveMAC("collide-1").String(), "ethernet-0")
			}
			cfg := base
			tc.change(&cfg)
			_, _, err := run(t, cfg, false)
			if err == nil {
				t.Fatal("no error")
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error shows the password: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			if s.uploads.Load() != 0 {
				t.Errorf("something was uploaded")
			}
		})
	}
}

// TestWait sets guestinfo.outpost.status as first boot would through
// VMware Tools and watches Wait follow it.
func TestWait(t *testing.T) {
	s := startSim(t, simulator.ESX())
	govc := govctest.Govc(t)
	cfg := Config{Conn: s.conn, OVA: testOVA(t, false), Key: testKey(t), Name: "Hobart", Count: 2}
	p, _, err := run(t, cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sess, err := Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close(ctx) //nolint:errcheck
	govctest.Run(t, govc, s.env, "vm.change", "-vm", "Hobart-1", "-e", StatusVar+"=enrolled Hobart-1")
	govctest.Run(t, govc, s.env, "vm.change", "-vm", "Hobart-2", "-e", StatusVar+"=failed: provisioning key: curly quote U+201C at column 3")
	err = sess.Wait(ctx, p, nil, "", 10*time.Millisecond, nil)
	if err == nil || !strings.Contains(err.Error(), "Hobart-2: : provisioning key: curly quote") && !strings.Contains(err.Error(), "curly quote U+201C") {
		t.Fatalf("Wait = %v, want the appliance's reason", err)
	}
	govctest.Run(t, govc, s.env, "vm.change", "-vm", "Hobart-2", "-e", StatusVar+"=configuring")
	tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := sess.Wait(tctx, p, nil, "", 10*time.Millisecond, nil); err == nil || !strings.Contains(err.Error(), "Hobart-2") || strings.Contains(err.Error(), "Hobart-1 (") {
		t.Fatalf("Wait = %v, want a timeout naming Hobart-2 only", err)
	}
	govctest.Run(t, govc, s.env, "vm.change", "-vm", "Hobart-2", "-e", StatusVar+"=enrolled Hobart-2")
	var seen []string
	if err := sess.Wait(ctx, p, nil, "", 10*time.Millisecond, func(pr Progress) { seen = append(seen, pr.VM+" "+pr.Status) }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 {
		t.Errorf("progress %q", seen)
	}
}

func TestCheckUses(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		ki   cpapi.KeyInfo
		need int
		ok   bool
	}{
		{cpapi.KeyInfo{Key: cpapi.Key{Name: "a", MaxUses: 2}}, 2, true},
		{cpapi.KeyInfo{Key: cpapi.Key{Name: "a", MaxUses: 2, UseCount: 1}}, 2, false},
		{cpapi.KeyInfo{Key: cpapi.Key{Name: "a", MaxUses: 2, UseCount: 2}}, 1, false},
		{cpapi.KeyInfo{Key: cpapi.Key{Name: "a", MaxUses: 2, UseCount: 2}}, 0, true},
		{cpapi.KeyInfo{Key: cpapi.Key{Name: "a", MaxUses: 9, State: cpapi.KeyRevoked}}, 1, false},
		{cpapi.KeyInfo{Key: cpapi.Key{Name: "a", MaxUses: 9}, Expired: true}, 1, false},
	} {
		err := CheckUses(tc.ki, tc.need, now)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrKeyExhausted)) {
			t.Errorf("CheckUses(%+v, %d) = %v", tc.ki, tc.need, err)
		}
	}
}

// TestOVAURL deploys from an OVA served over HTTP, streamed by govmomi's
// importer (TapeArchive with a remote Opener); a bad URL or a 404 is
// refused with the URL and what to check, and nothing is made.
func TestOVAURL(t *testing.T) {
	s := startSim(t, simulator.ESX())
	govc := govctest.Govc(t)
	ova := testOVA(t, false)
	var gets atomic.Int64
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/images/outpost.ova" {
			http.NotFound(w, r)
			return
		}
		gets.Add(1)
		http.ServeFile(w, r, ova)
	}))
	defer web.Close()

	cfg := Config{Conn: s.conn, OVA: web.URL + "/images/outpost.ova", Key: testKey(t), Name: "Cairns", Count: 2}
	p, r, err := run(t, cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Created) != 2 || s.uploads.Load() != 1 || r.UploadedBytes == 0 || r.UploadedBytes != s.uploaded.Load() || gets.Load() == 0 {
		t.Errorf("result %+v; %d uploads of %d bytes, %d GETs", r, s.uploads.Load(), s.uploaded.Load(), gets.Load())
	}
	for _, v := range p.VMs {
		if info := vmInfo(t, govc, s.env, v.Name); !strings.Contains(info, `"firmware":"efi"`) || !strings.Contains(info, OVFEnvVar) {
			t.Errorf("%s: vm.info %s", v.Name, info)
		}
	}

	for _, tc := range []struct {
		url  string
		want []string
	}{
		{web.URL + "/images/missing.ova", []string{"/images/missing.ova", "404 Not Found", "check that the URL serves the OVA"}},
		{"http://127.0.0.1:1/outpost.ova", []string{"127.0.0.1:1", "check that the URL serves the OVA"}},
		{"https:///outpost.ova", []string{"OVA URL", "http(s)://HOST/PATH.ova"}},
	} {
		cfg := cfg
		cfg.OVA, cfg.Name = tc.url, "Broome"
		_, _, err := run(t, cfg, false)
		if err == nil {
			t.Errorf("%s: no error", tc.url)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", tc.url, err, w)
			}
		}
	}
	if out := govctest.Run(t, govc, s.env, "find", "/", "-type", "m"); strings.Contains(out, "Broome") {
		t.Errorf("a failed deploy made VMs:\n%s", out)
	}
	if s.uploads.Load() != 1 {
		t.Errorf("%d uploads after the failures, want the first one only", s.uploads.Load())
	}
}

// TestLibrary imports the OVA into a content library, once, and deploys the
// pair from its item; destroy removes the item, and the library only when
// deploy made it.
func TestLibrary(t *testing.T) {
	model := simulator.VPX()
	model.ClusterHost = 2
	s := startSim(t, model)
	govc := govctest.Govc(t)
	ova := testOVA(t, false)
	key := testKey(t)
	ctx := context.Background()
	destroy := func(cfg Config) []string {
		t.Helper()
		sess, err := Connect(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close(ctx) //nolint:errcheck
		gone, err := sess.Destroy(ctx)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(gone)
		return gone
	}
	govctest.Run(t, govc, s.env, "library.create", "-ds", "LocalDS_0", "shared")

	for _, tc := range []struct {
		name, library string
		made          bool // deploy makes the library, and destroy removes it
	}{{"Nowra", "outpost-images", true}, {"Orange", "shared", false}} {
		t.Run(tc.library, func(t *testing.T) {
			before := s.uploads.Load()
			cfg := Config{Conn: s.conn, Cluster: "DC0_C0", Network: "VM Network", OVA: ova, Key: key, Name: tc.name, Count: 2, Library: tc.library}
			p, r, err := run(t, cfg, false)
			if err != nil {
				t.Fatal(err)
			}
			if p.Library != tc.library || p.TemplateExists || len(r.Created) != 2 {
				t.Errorf("plan %+v, result %+v", p, r)
			}
			if n := s.uploads.Load() - before; n != 1 || r.UploadedBytes == 0 {
				t.Errorf("%d disk uploads, %d bytes reported: want one upload for a pair", n, r.UploadedBytes)
			}
			item := "/" + tc.library + "/" + TemplateName(tc.name)
			if out := govctest.Run(t, govc, s.env, "library.ls", "/"+tc.library+"/*"); !strings.Contains(out, item) {
				t.Errorf("library.ls lacks %s:\n%s", item, out)
			}
			if out := govctest.Run(t, govc, s.env, "find", "/DC0/vm", "-type", "m", "-name", TemplateName(tc.name)); out != "" {
				t.Errorf("a template VM was made besides the library item: %s", out)
			}
			for _, v := range p.VMs {
				info := vmInfo(t, govc, s.env, v.Name)
				for _, want := range []string{`"firmware":"efi"`, TagName, `"powerState":"poweredOn"`, key.Reveal(), strings.ToLower(v.Name)} {
					if !strings.Contains(info, want) {
						t.Errorf("%s: vm.info lacks %s", v.Name, want)
					}
				}
				if dev := govctest.Run(t, govc, s.env, "device.info", "-vm", v.Name, "ethernet-*"); !strings.Contains(dev, v.MAC) {
					t.Errorf("%s: no MAC %s:\n%s", v.Name, v.MAC, dev)
				}
			}

			// Again: the item is found, nothing uploaded.
			p, r, err = run(t, cfg, false)
			if err != nil {
				t.Fatal(err)
			}
			if !p.TemplateExists || r.UploadedBytes != 0 || s.uploads.Load()-before != 1 {
				t.Errorf("rerun: plan %+v, result %+v", p, r)
			}

			want := []string{tc.name + "-1", tc.name + "-2", "library item " + tc.library + "/" + TemplateName(tc.name), "rule outpost-" + tc.name}
			if tc.made {
				want = append(want, "library "+tc.library)
			}
			slices.Sort(want)
			if gone := destroy(cfg); !slices.Equal(gone, want) {
				t.Errorf("destroy removed %q, want %q", gone, want)
			}
			out := govctest.Run(t, govc, s.env, "library.ls")
			if strings.Contains(out, "/"+tc.library) == tc.made {
				t.Errorf("after destroy, library.ls:\n%s", out)
			}
		})
	}

	// ESXi has no content library: refused before anything is made.
	e := startSim(t, simulator.ESX())
	_, _, err := run(t, Config{Conn: e.conn, OVA: ova, Key: key, Name: "Dubbo", Count: 2, Library: "x"}, false)
	if err == nil || !strings.Contains(err.Error(), "no content library") || e.uploads.Load() != 0 {
		t.Errorf("ESXi with --library: %v, %d uploads", err, e.uploads.Load())
	}
}
