package deploy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/ovf"
	"github.com/vmware/govmomi/ovf/importer"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/provkey"
)

// Tags in extraConfig that mark what a deploy made.
const (
	TagName = "outpost.deploy.name" // the key's name, which names the VMs
	TagRole = "outpost.deploy.role" // RoleTemplate or RoleConnector

	RoleTemplate  = "template"
	RoleConnector = "connector"

	// StatusVar is the guestinfo variable first boot publishes.
	StatusVar = appliance.GuestinfoStatus
	// OVFEnvVar carries the OVF environment on a standalone ESXi host.
	OVFEnvVar = appliance.GuestinfoOVFEnv
)

// API types as detected from the service content.
const (
	APIvCenter = "vcenter"
	APIESXi    = "esxi"
)

// Sentinel errors callers branch on.
var (
	ErrLogin        = errors.New("vSphere login failed")
	ErrNotFound     = errors.New("not found")
	ErrMACCollision = errors.New("MAC address already in use")
)

// Connection says how to reach vSphere (govc's GOVC_URL, GOVC_USERNAME, …).
type Connection struct {
	URL      string
	Username string
	Password string
	Insecure bool
	CACerts  string // PEM file(s), as GOVC_TLS_CA_CERTS
}

// Network holds the per-VM network settings; empty IPs means DHCP.
type Network struct {
	IPs     []string // one ADDRESS/PREFIX per VM
	Gateway string
	DNS     []string
	Search  []string
	NTP     []string
	Proxy   string
}

// Config is a deployment.
type Config struct {
	Conn         Connection
	Datacenter   string
	Cluster      string
	Host         string
	ResourcePool string
	Folder       string
	Datastores   []string // VM i goes to Datastores[i%len]
	Network      string
	Library      string // a content library to upload into instead of a template (vCenter)

	OVA   string // a file, or an http(s) URL streamed as it is read
	Key   provkey.Key
	Name  string // the key's name: VMs are Name-1 … Name-Count
	Count int
	Net   Network

	CPUs      int // 0: the appliance default
	MemoryMiB int // 0: the appliance default

	Log func(format string, a ...any) // progress; nil: quiet
}

func (c *Config) logf(format string, a ...any) {
	if c.Log != nil {
		c.Log(format, a...)
	}
}

// Validate checks the configuration before anything connects, naming every
// problem at once, and fills defaults.
func (c *Config) Validate() (warnings []string, err error) {
	var probs []string
	if c.Count < 1 {
		probs = append(probs, fmt.Sprintf("count %d: deploy at least one connector", c.Count))
	}
	if c.OVA == "" {
		probs = append(probs, "no OVA given")
	} else if importer.IsRemotePath(c.OVA) {
		if err := checkOVAURL(c.OVA); err != nil {
			probs = append(probs, err.Error())
		}
	}
	if c.Name == "" {
		probs = append(probs, "no name: the VMs are named after the key")
	} else if err := appliance.CheckVMName(VMName(c.Name, max(c.Count, 1))); err != nil {
		probs = append(probs, "name: "+err.Error())
	}
	if c.Key.Host == "" {
		probs = append(probs, "no provisioning key")
	}
	if n := len(c.Net.IPs); n > 0 && n != c.Count {
		probs = append(probs, fmt.Sprintf("%d static addresses for %d VMs: give one ADDRESS/PREFIX per VM", n, c.Count))
	}
	for _, ip := range c.Net.IPs {
		if _, err := netip.ParsePrefix(ip); err != nil {
			probs = append(probs, fmt.Sprintf("address %q: use ADDRESS/PREFIX, e.g. 192.0.2.10/24", ip))
		}
	}
	if len(c.Net.IPs) > 0 && c.Net.Gateway == "" {
		probs = append(probs, "static addresses need a gateway")
	}
	if c.Net.Gateway != "" {
		if _, err := netip.ParseAddr(c.Net.Gateway); err != nil {
			probs = append(probs, fmt.Sprintf("gateway %q is not an IPv4 address", c.Net.Gateway))
		}
	}
	if c.CPUs == 0 {
		c.CPUs = appliance.DefaultCPUs
	}
	if c.MemoryMiB == 0 {
		c.MemoryMiB = appliance.DefaultMemoryMiB
	}
	if c.CPUs < appliance.DefaultCPUs {
		warnings = append(warnings, fmt.Sprintf("%d vCPU is below the appliance's %d", c.CPUs, appliance.DefaultCPUs))
	}
	switch {
	case c.MemoryMiB < appliance.LabMemoryMiB:
		probs = append(probs, fmt.Sprintf("memory %d MiB: the appliance needs at least %d MiB", c.MemoryMiB, appliance.LabMemoryMiB))
	case c.MemoryMiB < appliance.DefaultMemoryMiB:
		warnings = append(warnings, fmt.Sprintf("memory %d MiB is below the appliance's %d MiB: lab only", c.MemoryMiB, appliance.DefaultMemoryMiB))
	}
	if len(probs) > 0 {
		return warnings, errors.New(strings.Join(probs, "; "))
	}
	return warnings, nil
}

// VMName is the name of the i-th VM (1-based), as the control plane names
// the connector.
func VMName(name string, i int) string { return fmt.Sprintf("%s-%d", name, i) }

// TemplateName is the name of the object the disk is uploaded into.
func TemplateName(name string) string { return name + "-template" }

// RuleName is the name of the DRS anti-affinity rule.
func RuleName(name string) string { return "outpost-" + name }

// Session is a logged-in connection with the placement resolved.
type Session struct {
	cfg    Config
	client *govmomi.Client
	finder *find.Finder
	dc     *object.Datacenter
	api    string

	pool       *object.ResourcePool
	folder     *object.Folder
	cluster    *object.ClusterComputeResource
	hosts      []*object.HostSystem
	datastores []*object.Datastore
	network    object.NetworkReference

	user *url.Userinfo
	rc   *rest.Client  // the vAPI session, made when a library is used
	env  *ovf.Envelope // the OVA's descriptor, read once
}

// Connect logs in and resolves datacenter, compute, datastores, network
// and folder; a name that does not exist is reported with those that do.
func Connect(ctx context.Context, cfg Config) (*Session, error) {
	u, err := soap.ParseURL(cfg.Conn.URL)
	if err != nil || u == nil {
		return nil, fmt.Errorf("vSphere URL %q: use https://HOST or HOST (GOVC_URL)", cfg.Conn.URL)
	}
	if cfg.Conn.Username != "" {
		u.User = url.UserPassword(cfg.Conn.Username, cfg.Conn.Password)
	}
	shown := *u
	shown.User = nil
	user := u.User.Username()
	pass, _ := u.User.Password()
	hide := func(err error) string {
		s := err.Error()
		if pass != "" {
			s = strings.ReplaceAll(s, pass, "****")
			s = strings.ReplaceAll(s, url.QueryEscape(pass), "****")
		}
		return s
	}
	sc := soap.NewClient(u, cfg.Conn.Insecure)
	if cfg.Conn.CACerts != "" {
		if err := sc.SetRootCAs(cfg.Conn.CACerts); err != nil {
			return nil, fmt.Errorf("GOVC_TLS_CA_CERTS %s: %w", cfg.Conn.CACerts, err)
		}
	}
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %s", shown.String(), hide(err))
	}
	c := &govmomi.Client{Client: vc, SessionManager: session.NewManager(vc)}
	if err := c.Login(ctx, u.User); err != nil {
		if soap.IsSoapFault(err) {
			return nil, fmt.Errorf("%w at %s as %q: %s; check GOVC_USERNAME and GOVC_PASSWORD", ErrLogin, shown.String(), user, hide(err))
		}
		return nil, fmt.Errorf("connecting to %s: %s", shown.String(), hide(err))
	}
	s := &Session{cfg: cfg, client: c, finder: find.NewFinder(c.Client, false), api: APIESXi, user: u.User}
	if c.IsVC() {
		s.api = APIvCenter
	}
	if err := s.resolve(ctx); err != nil {
		_ = c.Logout(ctx)
		return nil, err
	}
	return s, nil
}

// API is APIvCenter or APIESXi.
func (s *Session) API() string { return s.api }

// Client is the logged-in govmomi client.
func (s *Session) Client() *govmomi.Client { return s.client }

// Close logs out.
func (s *Session) Close(ctx context.Context) error {
	if s.rc != nil {
		_ = s.rc.Logout(ctx)
	}
	return s.client.Logout(ctx)
}

func notFound(what, name string, existing []string) error {
	if len(existing) == 0 {
		return fmt.Errorf("%w: %s %q; there is none", ErrNotFound, what, name)
	}
	return fmt.Errorf("%w: %s %q; these exist: %s", ErrNotFound, what, name, strings.Join(existing, ", "))
}

func (s *Session) resolve(ctx context.Context) error {
	f := s.finder
	var err error
	if s.cfg.Datacenter != "" {
		s.dc, err = f.Datacenter(ctx, s.cfg.Datacenter)
	} else {
		s.dc, err = f.DefaultDatacenter(ctx)
	}
	if err != nil {
		var names []string
		dcs, _ := f.DatacenterList(ctx, "*")
		for _, d := range dcs {
			names = append(names, d.Name())
		}
		if s.cfg.Datacenter == "" {
			return fmt.Errorf("datacenter: %v; choose one with --datacenter (GOVC_DATACENTER): %s", err, strings.Join(names, ", "))
		}
		return notFound("datacenter", s.cfg.Datacenter, names)
	}
	f.SetDatacenter(s.dc)

	// Compute: a cluster, a host, or the default.
	switch {
	case s.cfg.Cluster != "":
		s.cluster, err = f.ClusterComputeResource(ctx, s.cfg.Cluster)
		if err != nil {
			var names []string
			cs, _ := f.ClusterComputeResourceList(ctx, "*")
			for _, c := range cs {
				names = append(names, c.Name())
			}
			return notFound("cluster", s.cfg.Cluster, names)
		}
		s.hosts, err = s.cluster.Hosts(ctx)
		if err != nil {
			return err
		}
		s.pool, err = s.cluster.ResourcePool(ctx)
	case s.cfg.Host != "":
		h, err := f.HostSystem(ctx, s.cfg.Host)
		if err != nil {
			var names []string
			hs, _ := f.HostSystemList(ctx, "*")
			for _, h := range hs {
				names = append(names, h.Name())
			}
			return notFound("host", s.cfg.Host, names)
		}
		s.hosts = []*object.HostSystem{h}
		s.pool, err = h.ResourcePool(ctx)
		if err != nil {
			return err
		}
	default:
		hs, herr := f.HostSystemList(ctx, "*")
		if herr == nil && len(hs) == 1 {
			s.hosts = hs
		}
		s.pool, err = f.DefaultResourcePool(ctx)
	}
	if err != nil {
		return fmt.Errorf("resource pool: %v; name one with --resource-pool (GOVC_RESOURCE_POOL) or --cluster", err)
	}
	if s.cfg.ResourcePool != "" {
		s.pool, err = f.ResourcePool(ctx, s.cfg.ResourcePool)
		if err != nil {
			return fmt.Errorf("%w: resource pool %q", ErrNotFound, s.cfg.ResourcePool)
		}
	}

	dsNames := s.cfg.Datastores
	var all []string
	if dss, _ := f.DatastoreList(ctx, "*"); dss != nil {
		for _, d := range dss {
			all = append(all, d.Name())
		}
	}
	if len(dsNames) == 0 {
		d, err := f.DefaultDatastore(ctx)
		if err != nil {
			return fmt.Errorf("datastore: %v; choose one with --datastore (GOVC_DATASTORE): %s", err, strings.Join(all, ", "))
		}
		s.datastores = []*object.Datastore{d}
	}
	for _, n := range dsNames {
		d, err := f.Datastore(ctx, n)
		if err != nil {
			return notFound("datastore", n, all)
		}
		s.datastores = append(s.datastores, d)
	}

	var netNames []string
	if ns, _ := f.NetworkList(ctx, "*"); ns != nil {
		for _, n := range ns {
			netNames = append(netNames, pathBase(n.GetInventoryPath()))
		}
	}
	if s.cfg.Network == "" {
		s.network, err = f.DefaultNetwork(ctx)
		if err != nil {
			return fmt.Errorf("network: %v; choose one with --network (GOVC_NETWORK): %s", err, strings.Join(netNames, ", "))
		}
	} else if s.network, err = f.Network(ctx, s.cfg.Network); err != nil {
		return notFound("network", s.cfg.Network, netNames)
	}

	if s.cfg.Folder != "" {
		s.folder, err = f.Folder(ctx, s.cfg.Folder)
		if err != nil {
			return fmt.Errorf("%w: folder %q", ErrNotFound, s.cfg.Folder)
		}
	} else {
		folders, err := s.dc.Folders(ctx)
		if err != nil {
			return err
		}
		s.folder = folders.VmFolder
	}
	return nil
}

func pathBase(p string) string {
	if i := strings.LastIndex(p, "/"); i >= 0 {
		return p[i+1:]
	}
	return p
}

// inventory is every VM of the datacenter with what deploy reads.
type inventoryVM struct {
	ref   types.ManagedObjectReference
	name  string
	macs  []string
	extra map[string]string
	power types.VirtualMachinePowerState
	host  string
	ds    string
	tmpl  bool
}

func (s *Session) inventory(ctx context.Context) ([]inventoryVM, error) {
	m := view.NewManager(s.client.Client)
	v, err := m.CreateContainerView(ctx, s.client.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		return nil, err
	}
	defer v.Destroy(ctx) //nolint:errcheck
	var vms []mo.VirtualMachine
	if err := v.Retrieve(ctx, []string{"VirtualMachine"}, []string{"name", "config.hardware.device", "config.extraConfig", "config.template", "runtime.powerState", "runtime.host", "datastore"}, &vms); err != nil {
		return nil, err
	}
	pc := property.DefaultCollector(s.client.Client)
	var out []inventoryVM
	for _, vm := range vms {
		iv := inventoryVM{ref: vm.Self, name: vm.Name, extra: map[string]string{}, power: vm.Runtime.PowerState}
		if vm.Config != nil {
			iv.tmpl = vm.Config.Template
			for _, d := range vm.Config.Hardware.Device {
				if nic, ok := d.(types.BaseVirtualEthernetCard); ok {
					if mac := nic.GetVirtualEthernetCard().MacAddress; mac != "" {
						iv.macs = append(iv.macs, strings.ToLower(mac))
					}
				}
			}
			for _, o := range vm.Config.ExtraConfig {
				if ov := o.GetOptionValue(); ov != nil {
					if str, ok := ov.Value.(string); ok {
						iv.extra[ov.Key] = str
					}
				}
			}
		}
		if vm.Runtime.Host != nil {
			var h mo.HostSystem
			if pc.RetrieveOne(ctx, *vm.Runtime.Host, []string{"name"}, &h) == nil {
				iv.host = h.Name
			}
		}
		if len(vm.Datastore) > 0 {
			var d mo.Datastore
			if pc.RetrieveOne(ctx, vm.Datastore[0], []string{"name"}, &d) == nil {
				iv.ds = d.Name
			}
		}
		out = append(out, iv)
	}
	slices.SortFunc(out, func(a, b inventoryVM) int { return strings.Compare(a.name, b.name) })
	return out, nil
}
