package deploy

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"sort"
	"sync/atomic"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/ovf/importer"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/outpost-appliance/outpost/appliance"
)

// Result is what Apply did.
type Result struct {
	UploadedBytes int64    `json:"uploaded_bytes"`
	Created       []string `json:"created,omitempty"`
	PoweredOn     []string `json:"powered_on,omitempty"`
	Rule          string   `json:"rule,omitempty"`
}

// Apply makes what the plan says is missing: the template (one upload),
// the VMs, the anti-affinity rule; then powers on the VMs that are off.
func (s *Session) Apply(ctx context.Context, p *Plan) (*Result, error) {
	res := &Result{}
	missing := false
	for _, v := range p.VMs {
		missing = missing || !v.Exists
	}
	var tmpl *object.VirtualMachine
	var item string
	if missing {
		var err error
		if s.cfg.Library != "" {
			item, err = s.libraryItem(ctx, p, res)
		} else {
			tmpl, err = s.template(ctx, p, res)
		}
		if err != nil {
			return res, err
		}
	}
	vms := make([]*object.VirtualMachine, len(p.VMs))
	for i, v := range p.VMs {
		var vm *object.VirtualMachine
		var err error
		if v.Exists {
			vm, err = s.finder.VirtualMachine(ctx, v.Name)
		} else {
			s.cfg.logf("%s: creating on %s (MAC %s)\n", v.Name, v.Datastore, v.MAC)
			if item != "" {
				vm, err = s.deployItem(ctx, item, i, v)
			} else {
				vm, err = s.create(ctx, tmpl, i, v)
			}
			if err == nil {
				res.Created = append(res.Created, v.Name)
			}
		}
		if err != nil {
			return res, fmt.Errorf("%s: %w", v.Name, err)
		}
		if v.PowerState != string(types.VirtualMachinePowerStatePoweredOn) {
			// An interrupted run may have left it half-configured:
			// configuring again is harmless while it is off.
			if err := s.configure(ctx, vm, v); err != nil {
				return res, fmt.Errorf("%s: configuring: %w", v.Name, err)
			}
		}
		vms[i] = vm
	}
	if p.Rule != "" {
		if err := s.rule(ctx, p.Rule, vms); err != nil {
			return res, fmt.Errorf("anti-affinity rule %s: %w", p.Rule, err)
		}
		res.Rule = p.Rule
	}
	for i, v := range p.VMs {
		if v.PowerState == string(types.VirtualMachinePowerStatePoweredOn) {
			continue
		}
		s.cfg.logf("%s: powering on\n", v.Name)
		t, err := vms[i].PowerOn(ctx)
		if err == nil {
			err = t.Wait(ctx)
		}
		if err != nil {
			return res, fmt.Errorf("%s: powering on: %w", v.Name, err)
		}
		res.PoweredOn = append(res.PoweredOn, v.Name)
	}
	return res, nil
}

func tag(role, name string) []types.BaseOptionValue {
	return []types.BaseOptionValue{
		&types.OptionValue{Key: TagName, Value: name},
		&types.OptionValue{Key: TagRole, Value: role},
	}
}

// template finds or imports the template: the one upload.
func (s *Session) template(ctx context.Context, p *Plan, res *Result) (*object.VirtualMachine, error) {
	if p.TemplateExists {
		return s.finder.VirtualMachine(ctx, p.Template)
	}
	s.cfg.logf("%s: uploading %s\n", p.Template, ovaName(s.cfg.OVA))
	var n atomic.Int64
	imp := &importer.Importer{
		Client:       s.client.Client,
		Finder:       s.finder,
		Datacenter:   s.dc,
		Datastore:    s.datastores[0],
		ResourcePool: s.pool,
		Folder:       s.folder,
		Archive:      countingArchive{&importer.TapeArchive{Path: s.cfg.OVA, Opener: ovaOpener(s.cfg.OVA)}, &n},
		Log:          func(string) (int, error) { return 0, nil },
	}
	if len(s.hosts) == 1 {
		imp.Host = s.hosts[0]
	}
	env, err := s.descriptor()
	if err != nil {
		return nil, err
	}
	name := p.Template
	opts := importer.Options{Name: &name, DiskProvisioning: string(types.OvfCreateImportSpecParamsDiskProvisioningTypeThin)}
	if env.Network != nil {
		for _, nw := range env.Network.Networks {
			opts.NetworkMapping = append(opts.NetworkMapping, importer.Network{Name: nw.Name, Network: s.network.Reference().String()})
		}
	}
	ref, err := imp.Import(ctx, "*.ovf", opts)
	res.UploadedBytes += n.Load()
	if err != nil {
		return nil, fmt.Errorf("importing %s: %w", ovaName(s.cfg.OVA), err)
	}
	vm := object.NewVirtualMachine(s.client.Client, *ref)
	t, err := vm.Reconfigure(ctx, types.VirtualMachineConfigSpec{ExtraConfig: tag(RoleTemplate, s.cfg.Name)})
	if err == nil {
		err = t.Wait(ctx)
	}
	if err != nil {
		return nil, err
	}
	s.cfg.logf("%s: uploaded %d bytes\n", p.Template, n.Load())
	if s.api == APIvCenter {
		if err := vm.MarkAsTemplate(ctx); err != nil {
			return nil, err
		}
	}
	return vm, nil
}

// create makes VM i from the template: a clone on vCenter; on ESXi, which
// cannot clone, a copy of the template's disk and a new VM around it.
func (s *Session) create(ctx context.Context, tmpl *object.VirtualMachine, i int, v VMPlan) (*object.VirtualMachine, error) {
	ds := s.datastores[i%len(s.datastores)]
	var host *object.HostSystem
	if len(s.hosts) > 0 {
		host = s.hosts[i%len(s.hosts)]
	}
	if s.api == APIvCenter {
		pool := s.pool.Reference()
		loc := types.VirtualMachineRelocateSpec{Pool: &pool}
		dsRef := ds.Reference()
		loc.Datastore = &dsRef
		if host != nil {
			h := host.Reference()
			loc.Host = &h
		}
		t, err := tmpl.Clone(ctx, s.folder, v.Name, types.VirtualMachineCloneSpec{
			Location: loc,
			Config:   &types.VirtualMachineConfigSpec{ExtraConfig: tag(RoleConnector, s.cfg.Name)},
		})
		if err != nil {
			return nil, err
		}
		info, err := t.WaitForResult(ctx)
		if err != nil {
			return nil, err
		}
		return object.NewVirtualMachine(s.client.Client, info.Result.(types.ManagedObjectReference)), nil
	}

	var mt mo.VirtualMachine
	if err := tmpl.Properties(ctx, tmpl.Reference(), []string{"config"}, &mt); err != nil {
		return nil, err
	}
	devs := object.VirtualDeviceList(mt.Config.Hardware.Device)
	dir := fmt.Sprintf("[%s] %s", ds.Name(), v.Name)
	if err := object.NewFileManager(s.client.Client).MakeDirectory(ctx, dir, s.dc, true); err != nil {
		return nil, fmt.Errorf("making %s: %w", dir, err)
	}
	var changes []types.BaseVirtualDeviceConfigSpec
	keys := map[int32]int32{}
	next := int32(-100)
	for _, d := range devs.SelectByType((*types.VirtualSCSIController)(nil)) {
		next--
		keys[d.GetVirtualDevice().Key] = next
		d.GetVirtualDevice().Key = next
		changes = append(changes, &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationAdd, Device: d})
	}
	for n, d := range devs.SelectByType((*types.VirtualDisk)(nil)) {
		disk := d.(*types.VirtualDisk)
		b, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		if !ok {
			return nil, fmt.Errorf("the template's disk has an unexpected backing %T", disk.Backing)
		}
		dst := fmt.Sprintf("%s/%s_%d.vmdk", dir, v.Name, n)
		s.cfg.logf("%s: copying %s\n", v.Name, b.FileName)
		t, err := object.NewVirtualDiskManager(s.client.Client).CopyVirtualDisk(ctx, b.FileName, s.dc, dst, s.dc, nil, false)
		if err == nil {
			err = t.Wait(ctx)
		}
		if err != nil {
			return nil, fmt.Errorf("copying the template's disk to %s: %w", dst, err)
		}
		next--
		disk.Key = next
		disk.ControllerKey = keys[disk.ControllerKey]
		b.FileName, b.Parent, b.Uuid = dst, nil, ""
		changes = append(changes, &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationAdd, Device: disk})
	}
	for _, d := range devs.SelectByType((*types.VirtualEthernetCard)(nil)) {
		next--
		d.GetVirtualDevice().Key = next
		changes = append(changes, &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationAdd, Device: d})
	}
	spec := types.VirtualMachineConfigSpec{
		Name: v.Name, GuestId: mt.Config.GuestId, Version: mt.Config.Version,
		Files:        &types.VirtualMachineFileInfo{VmPathName: fmt.Sprintf("[%s]", ds.Name())},
		DeviceChange: changes,
		ExtraConfig:  tag(RoleConnector, s.cfg.Name),
	}
	t, err := s.folder.CreateVM(ctx, spec, s.pool, host)
	if err != nil {
		return nil, err
	}
	info, err := t.WaitForResult(ctx)
	if err != nil {
		return nil, err
	}
	return object.NewVirtualMachine(s.client.Client, info.Result.(types.ManagedObjectReference)), nil
}

// configure gives a VM its hardware, firmware, NIC and properties.
func (s *Session) configure(ctx context.Context, vm *object.VirtualMachine, v VMPlan) error {
	var m mo.VirtualMachine
	if err := vm.Properties(ctx, vm.Reference(), []string{"config"}, &m); err != nil {
		return err
	}
	spec := types.VirtualMachineConfigSpec{
		NumCPUs:     int32(s.cfg.CPUs),
		MemoryMB:    int64(s.cfg.MemoryMiB),
		Firmware:    appliance.DefaultFirmware.OVF(),
		ExtraConfig: tag(RoleConnector, s.cfg.Name),
	}
	backing, err := s.network.EthernetCardBackingInfo(ctx)
	if err != nil {
		return err
	}
	nics := object.VirtualDeviceList(m.Config.Hardware.Device).SelectByType((*types.VirtualEthernetCard)(nil))
	if len(nics) == 0 {
		return fmt.Errorf("the template has no NIC")
	}
	card := nics[0].(types.BaseVirtualEthernetCard).GetVirtualEthernetCard()
	card.AddressType = string(types.VirtualEthernetCardMacTypeManual)
	card.MacAddress = v.MAC
	card.Backing = backing
	spec.DeviceChange = append(spec.DeviceChange, &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationEdit, Device: nics[0]})

	if s.api == APIvCenter {
		spec.VAppConfig = vappSpec(m.Config.VAppConfig, v.props)
	} else {
		spec.ExtraConfig = append(spec.ExtraConfig, &types.OptionValue{Key: OVFEnvVar, Value: ovfEnv(vm.Reference().Value, v.props)})
	}
	t, err := vm.Reconfigure(ctx, spec)
	if err != nil {
		return err
	}
	return t.Wait(ctx)
}

// vappSpec sets the properties in the VM's vApp config, editing those the
// template declared and adding the others.
func vappSpec(cur types.BaseVmConfigInfo, props map[string]string) *types.VmConfigSpec {
	have := map[string]int32{}
	maxKey := int32(0)
	if cur != nil {
		for _, p := range cur.GetVmConfigInfo().Property {
			have[p.Id] = p.Key
			maxKey = max(maxKey, p.Key)
		}
	}
	spec := &types.VmConfigSpec{OvfEnvironmentTransport: []string{"com.vmware.guestInfo"}}
	for _, k := range sortedKeys(props) {
		info := types.VAppPropertyInfo{Id: k, Value: props[k], Type: "string", UserConfigurable: types.NewBool(true)}
		op := types.ArrayUpdateOperationEdit
		if key, ok := have[k]; ok {
			info.Key = key
		} else {
			maxKey++
			info.Key, op = maxKey, types.ArrayUpdateOperationAdd
		}
		spec.Property = append(spec.Property, types.VAppPropertySpec{ArrayUpdateSpec: types.ArrayUpdateSpec{Operation: op}, Info: &info})
	}
	return spec
}

func sortedKeys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// ovfEnv is the OVF environment document vCenter would hand the guest.
func ovfEnv(id string, props map[string]string) string {
	var b bytes.Buffer
	esc := func(s string) string {
		var e bytes.Buffer
		_ = xml.EscapeText(&e, []byte(s))
		return e.String()
	}
	b.WriteString(xml.Header)
	fmt.Fprintf(&b, `<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:oe="http://schemas.dmtf.org/ovf/environment/1" xmlns:ve="http://www.vmware.com/schema/ovfenv" oe:id="" ve:esxId="%s">`, esc(id))
	b.WriteString("<PropertySection>")
	for _, k := range sortedKeys(props) {
		fmt.Fprintf(&b, `<Property oe:key="%s" oe:value="%s"/>`, esc(k), esc(props[k]))
	}
	b.WriteString("</PropertySection></Environment>")
	return b.String()
}

// rule adds or updates the anti-affinity rule over vms.
func (s *Session) rule(ctx context.Context, name string, vms []*object.VirtualMachine) error {
	var refs []types.ManagedObjectReference
	for _, vm := range vms {
		refs = append(refs, vm.Reference())
	}
	var cl mo.ClusterComputeResource
	if err := s.cluster.Properties(ctx, s.cluster.Reference(), []string{"configurationEx"}, &cl); err != nil {
		return err
	}
	info := &types.ClusterAntiAffinityRuleSpec{ClusterRuleInfo: types.ClusterRuleInfo{Name: name, Enabled: types.NewBool(true)}, Vm: refs}
	op := types.ArrayUpdateOperationAdd
	for _, r := range cl.ConfigurationEx.(*types.ClusterConfigInfoEx).Rule {
		if ri := r.GetClusterRuleInfo(); ri.Name == name {
			if aa, ok := r.(*types.ClusterAntiAffinityRuleSpec); ok && len(aa.Vm) == len(refs) {
				return nil
			}
			op, info.Key = types.ArrayUpdateOperationEdit, ri.Key
		}
	}
	s.cfg.logf("%s: anti-affinity rule over %d VMs\n", name, len(refs))
	t, err := s.cluster.Reconfigure(ctx, &types.ClusterConfigSpecEx{RulesSpec: []types.ClusterRuleSpec{{ArrayUpdateSpec: types.ArrayUpdateSpec{Operation: op}, Info: info}}}, true)
	if err != nil {
		return err
	}
	return t.Wait(ctx)
}

// Destroy removes the VMs, template and rule tagged with the config's name,
// and nothing else. It returns what it removed.
func (s *Session) Destroy(ctx context.Context) ([]string, error) {
	inv, err := s.inventory(ctx)
	if err != nil {
		return nil, err
	}
	var gone []string
	if s.cluster != nil {
		var cl mo.ClusterComputeResource
		if err := s.cluster.Properties(ctx, s.cluster.Reference(), []string{"configurationEx"}, &cl); err != nil {
			return nil, err
		}
		for _, r := range cl.ConfigurationEx.(*types.ClusterConfigInfoEx).Rule {
			if ri := r.GetClusterRuleInfo(); ri.Name == RuleName(s.cfg.Name) {
				key := ri.Key
				t, err := s.cluster.Reconfigure(ctx, &types.ClusterConfigSpecEx{RulesSpec: []types.ClusterRuleSpec{{ArrayUpdateSpec: types.ArrayUpdateSpec{Operation: types.ArrayUpdateOperationRemove, RemoveKey: key}}}}, true)
				if err == nil {
					err = t.Wait(ctx)
				}
				if err != nil {
					return gone, fmt.Errorf("removing rule %s: %w", ri.Name, err)
				}
				gone = append(gone, "rule "+ri.Name)
			}
		}
	}
	if s.cfg.Library != "" {
		g, err := s.destroyLibrary(ctx)
		gone = append(gone, g...)
		if err != nil {
			return gone, err
		}
	}
	for _, v := range inv {
		if v.extra[TagName] != s.cfg.Name {
			continue
		}
		vm := object.NewVirtualMachine(s.client.Client, v.ref)
		if v.power == types.VirtualMachinePowerStatePoweredOn {
			if t, err := vm.PowerOff(ctx); err == nil {
				_ = t.Wait(ctx)
			}
		}
		s.cfg.logf("%s: destroying\n", v.name)
		t, err := vm.Destroy(ctx)
		if err == nil {
			err = t.Wait(ctx)
		}
		if err != nil {
			return gone, fmt.Errorf("destroying %s: %w", v.name, err)
		}
		gone = append(gone, v.name)
	}
	return gone, nil
}
