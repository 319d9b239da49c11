package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/outpost-appliance/outpost/deploy"
	"github.com/outpost-appliance/outpost/provkey"
)

var (
	deployEntry = entry{
		Path:    "deploy",
		Summary: "Deploy connectors (a pair by default) to vCenter or a standalone ESXi host",
		Long: `Uploads the OVA's disk once (a template, or an item in the content library
--library; removed only by 'deploy destroy'), makes --count VMs named after the key (NAME-1, NAME-2, …) with a manual MAC
derived from the VM name, EFI, the appliance's hardware and their own OVF
properties (vApp config on vCenter; the OVF environment in guestinfo.ovfEnv on
a standalone ESXi host, detected from the API), a DRS anti-affinity rule on a
cluster, powers them on and waits until each one enrolls. Running it again
completes what is missing. The vSphere flags default to govc's environment
variables, named in each flag's help. The key comes from --key-file, --key -
(standard input) or --group (a key with exactly --count uses is created through
the admin config). The key is never printed in full.`,
		Examples: `outpost deploy --ova outpost-connector-0.1.0.ova --group melbourne --name Melbourne --cluster C1
outpost deploy --ova connector.ova --key-file melbourne.key --name Melbourne --ip 192.0.2.10/24,192.0.2.11/24 --gateway 192.0.2.1 --dns 192.0.2.53
outpost deploy --ova connector.ova --group melbourne --name Melbourne --dry-run --json
outpost deploy --ova https://images.example.com/outpost-connector-0.1.0.ova --key-file melbourne.key --name Melbourne
outpost deploy --ova connector.ova --group melbourne --name Melbourne --cluster C1 --library outpost
outpost deploy destroy --name Melbourne --cluster C1`,
		New: func() command { return &deployCmd{} },
	}
	deployDestroyEntry = entry{
		Path:     "deploy destroy",
		Summary:  "Remove the VMs, template or library item, and rule that 'outpost deploy' made for a key name",
		Examples: "outpost deploy destroy --name Melbourne\noutpost deploy destroy --name Melbourne --library outpost",
		New:      func() command { return &deployDestroyCmd{} },
	}
)

// vsphereFlags are the connection and placement, defaulting to GOVC_*.
type vsphereFlags struct {
	url, user, datacenter, cluster, host, pool, folder, network, ca string
	library                                                         string
	datastores                                                      []string
	insecure                                                        bool
	name                                                            string
	fs                                                              *pflag.FlagSet
}

func (v *vsphereFlags) register(fs *pflag.FlagSet) {
	v.fs = fs
	fs.StringVar(&v.name, "name", "", "the key's name; VMs are NAME-1, NAME-2, … (required)")
	fs.StringVar(&v.url, "url", "", "vCenter or ESXi URL (env GOVC_URL)")
	fs.StringVar(&v.user, "username", "", "vSphere user (env GOVC_USERNAME); the password only from env GOVC_PASSWORD")
	fs.BoolVar(&v.insecure, "insecure", false, "skip TLS verification (env GOVC_INSECURE)")
	fs.StringVar(&v.ca, "tls-ca-certs", "", "CA certificates file (env GOVC_TLS_CA_CERTS)")
	fs.StringVar(&v.datacenter, "datacenter", "", "datacenter (env GOVC_DATACENTER)")
	fs.StringVar(&v.cluster, "cluster", "", "cluster; the VMs get an anti-affinity rule (env GOVC_CLUSTER)")
	fs.StringVar(&v.host, "host", "", "host (env GOVC_HOST)")
	fs.StringSliceVar(&v.datastores, "datastore", nil, "datastore, or a,b to put the VMs on different ones (env GOVC_DATASTORE)")
	fs.StringVar(&v.network, "network", "", "network (env GOVC_NETWORK)")
	fs.StringVar(&v.pool, "resource-pool", "", "resource pool (env GOVC_RESOURCE_POOL)")
	fs.StringVar(&v.folder, "folder", "", "VM folder (env GOVC_FOLDER)")
	fs.StringVar(&v.library, "library", "", "content library (vCenter) to upload into and deploy from instead of a template; made when missing")
}

func (v *vsphereFlags) config() deploy.Config {
	env := func(flag, val, name string) string {
		if v.fs.Changed(flag) {
			return val
		}
		return os.Getenv(name)
	}
	insecure := v.insecure
	if !v.fs.Changed("insecure") {
		insecure, _ = strconv.ParseBool(os.Getenv("GOVC_INSECURE"))
	}
	ds := v.datastores
	if !v.fs.Changed("datastore") && os.Getenv("GOVC_DATASTORE") != "" {
		ds = strings.Split(os.Getenv("GOVC_DATASTORE"), ",")
	}
	return deploy.Config{
		Conn: deploy.Connection{URL: env("url", v.url, "GOVC_URL"), Username: env("username", v.user, "GOVC_USERNAME"),
			Password: os.Getenv("GOVC_PASSWORD"), Insecure: insecure, CACerts: env("tls-ca-certs", v.ca, "GOVC_TLS_CA_CERTS")},
		Datacenter: env("datacenter", v.datacenter, "GOVC_DATACENTER"), Cluster: env("cluster", v.cluster, "GOVC_CLUSTER"),
		Host: env("host", v.host, "GOVC_HOST"), ResourcePool: env("resource-pool", v.pool, "GOVC_RESOURCE_POOL"),
		Folder: env("folder", v.folder, "GOVC_FOLDER"), Network: env("network", v.network, "GOVC_NETWORK"),
		Datastores: ds, Name: v.name, Library: v.library,
	}
}

type deployCmd struct {
	vs                 vsphereFlags
	admin              adminOpts
	ova, keyFile, key  string
	group              string
	count, cpus, memMB int
	net                deploy.Network
	dryRun, noWait     bool
	timeout            time.Duration
}

func (c *deployCmd) Register(fs *pflag.FlagSet) {
	fs.StringVar(&c.ova, "ova", "", "the appliance OVA written by 'outpost image build': a file or an http(s) URL, streamed (required)")
	fs.IntVar(&c.count, "count", 2, "how many connectors")
	fs.StringVar(&c.keyFile, "key-file", "", "provisioning key from this file")
	fs.StringVar(&c.key, "key", "", "'-': provisioning key from standard input")
	fs.StringVar(&c.group, "group", "", "create a key NAME with exactly --count uses in this group (needs --config)")
	c.vs.register(fs)
	fs.StringSliceVar(&c.net.IPs, "ip", nil, "static ADDRESS/PREFIX per VM, comma-separated (default DHCP)")
	fs.StringVar(&c.net.Gateway, "gateway", "", "IPv4 gateway (static)")
	fs.StringSliceVar(&c.net.DNS, "dns", nil, "DNS servers")
	fs.StringSliceVar(&c.net.Search, "search", nil, "DNS search domains")
	fs.StringSliceVar(&c.net.NTP, "ntp", nil, "NTP servers")
	fs.StringVar(&c.net.Proxy, "proxy", "", "HTTP proxy URL")
	fs.IntVar(&c.cpus, "cpus", 0, "vCPUs (default the appliance's 2)")
	fs.IntVar(&c.memMB, "memory", 0, "memory in MiB (default the appliance's 4096)")
	fs.BoolVar(&c.dryRun, "dry-run", false, "print the plan (key redacted) and change nothing")
	fs.BoolVar(&c.noWait, "no-wait", false, "do not wait for enrollment")
	fs.DurationVar(&c.timeout, "timeout", 15*time.Minute, "how long to wait for enrollment")
	c.admin.register(fs)
}

func (c *deployCmd) Run(ctx context.Context, s streams, args []string) error {
	if len(args) > 0 {
		return usagef("deploy takes flags only (got %q)", args)
	}
	n := 0
	for _, set := range []bool{c.keyFile != "", c.key != "", c.group != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		return usagef("deploy: give exactly one of --key-file FILE, --key -, --group GROUP")
	}
	if c.key != "" && c.key != "-" {
		return usagef("--key takes only '-' (standard input): a key on the command line would show in the process list")
	}
	if c.ova == "" || c.vs.name == "" {
		return usagef("deploy: --ova and --name are required")
	}
	cfg := c.vs.config()
	cfg.OVA, cfg.Count, cfg.Net, cfg.CPUs, cfg.MemoryMiB = c.ova, c.count, c.net, c.cpus, c.memMB
	cfg.Log = func(f string, a ...any) { fmt.Fprintf(s.Err, f, a...) }

	var cp deploy.ControlPlane
	if c.group != "" || fileExists(c.admin.config) {
		cl, err := c.admin.client(s)
		if err != nil {
			if c.group != "" {
				return err
			}
		} else {
			cp = cl
		}
	}
	switch {
	case c.group != "" && c.dryRun:
		cfg.Key = provkey.Key{Version: provkey.Version, Host: "(created by deploy)"}
	case c.group != "":
		k, _, err := deploy.GroupKey(ctx, cp, c.group, c.vs.name, c.count)
		if err != nil {
			return err
		}
		cfg.Key = k
	default:
		var b []byte
		var err error
		if c.key == "-" {
			b, err = io.ReadAll(io.LimitReader(s.In, 64<<10))
		} else {
			b, err = os.ReadFile(c.keyFile)
		}
		if err != nil {
			return err
		}
		r := provkey.Check(b)
		if !r.Valid() {
			return fmt.Errorf("the provisioning key does not check; run 'outpost key check' on it for the details")
		}
		if cfg.Key, err = provkey.Parse(strings.TrimSpace(string(b))); err != nil {
			return err
		}
	}
	warnings, err := cfg.Validate()
	if err != nil {
		return usagef("deploy: %v", err)
	}
	for _, w := range warnings {
		fmt.Fprintf(s.Err, "warning: %s\n", w)
	}
	sess, err := deploy.Connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer sess.Close(context.WithoutCancel(ctx)) //nolint:errcheck
	plan, err := sess.Plan(ctx)
	if err != nil {
		return err
	}
	for _, w := range plan.Warnings {
		fmt.Fprintf(s.Err, "warning: %s\n", w)
	}
	if c.dryRun {
		if c.admin.json {
			return printJSON(s.Out, plan)
		}
		printPlan(s.Out, plan)
		return nil
	}
	if cp != nil && plan.Missing() > 0 {
		ki, err := deploy.LookupKey(ctx, cp, cfg.Key)
		if err != nil {
			return err
		}
		if err := deploy.CheckUses(ki, plan.Missing(), time.Now()); err != nil {
			return err
		}
	}
	res, err := sess.Apply(ctx, plan)
	if res != nil && res.UploadedBytes > 0 {
		fmt.Fprintf(s.Err, "uploaded %d bytes once for %d VMs\n", res.UploadedBytes, len(plan.VMs))
	}
	if err != nil {
		return err
	}
	if !c.noWait {
		wctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		err := sess.Wait(wctx, plan, cp, c.group, 5*time.Second, func(p deploy.Progress) {
			fmt.Fprintf(s.Err, "%s: %s %s\n", p.VM, safe(p.Status), p.Health)
		})
		if err != nil {
			return err
		}
	}
	if c.admin.json {
		return printJSON(s.Out, res)
	}
	for _, v := range plan.VMs {
		fmt.Fprintf(s.Out, "%s\t%s\n", v.Name, v.MAC)
	}
	return nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func printPlan(w io.Writer, p *deploy.Plan) {
	fmt.Fprintf(w, "API:        %s\nDatacenter: %s\nCluster:    %s\nNetwork:    %s\nTemplate:   %s (exists: %v)\nRule:       %s\n",
		p.API, safe(p.Datacenter), safe(p.Cluster), safe(p.Network), safe(p.Template), p.TemplateExists, safe(p.Rule))
	if p.Library != "" {
		fmt.Fprintf(w, "Library:    %s (the template is an item there)\n", safe(p.Library))
	}
	for _, v := range p.VMs {
		fmt.Fprintf(w, "\n%s  MAC %s  host %s  datastore %s  exists %v %s\n", safe(v.Name), v.MAC, safe(v.Host), safe(v.Datastore), v.Exists, v.PowerState)
		for _, k := range slices.Sorted(maps.Keys(v.Properties)) {
			fmt.Fprintf(w, "  %s = %s\n", k, safe(v.Properties[k]))
		}
	}
}

type deployDestroyCmd struct{ vs vsphereFlags }

func (c *deployDestroyCmd) Register(fs *pflag.FlagSet) { c.vs.register(fs) }

func (c *deployDestroyCmd) Run(ctx context.Context, s streams, args []string) error {
	if len(args) > 0 || c.vs.name == "" {
		return usagef("deploy destroy: --name NAME is required and takes no arguments")
	}
	cfg := c.vs.config()
	cfg.Log = func(f string, a ...any) { fmt.Fprintf(s.Err, f, a...) }
	sess, err := deploy.Connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer sess.Close(context.WithoutCancel(ctx)) //nolint:errcheck
	gone, err := sess.Destroy(ctx)
	for _, g := range gone {
		fmt.Fprintf(s.Out, "removed %s\n", safe(g))
	}
	return err
}
