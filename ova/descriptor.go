package ova

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"strconv"
	"strings"

	"github.com/vmware/govmomi/ovf"
)

// Disk is one virtual disk of the appliance: a finished disk file (normally
// a streamOptimized VMDK) stored in the OVA as Name.
type Disk struct {
	Name          string // member name in the OVA, e.g. connector-disk1.vmdk
	Path          string // the file to pack
	Capacity      int64  // virtual size in bytes
	PopulatedSize int64  // bytes in use inside the disk; 0 if unknown
	// SHA256 is the file's lowercase hex digest when the caller computed it
	// while writing the file; empty makes WriteOVA read the file once more.
	SHA256 string
	// size is the file size, filled by WriteOVA from the file.
	size int64
}

// Namespaces of an OVF 1.0 envelope, as ovftool writes them.
const (
	nsOVF  = "http://schemas.dmtf.org/ovf/envelope/1"
	nsRASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
	nsVSSD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
	nsVMW  = "http://www.vmware.com/schema/ovf"
	nsCIM  = "http://schemas.dmtf.org/wbem/wscim/1/common"
	nsXSI  = "http://www.w3.org/2001/XMLSchema-instance"

	streamOptimized = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
	// transports: the OVF environment is offered both on a CD-ROM (iso) and
	// through VMware Tools (guestinfo.ovfEnv).
	transports = "com.vmware.guestInfo iso"
)

var scsiSubType = map[string]string{"lsilogic": "lsilogic", "pvscsi": "VirtualSCSI"}

// Descriptor returns the OVF 1.0 descriptor of appliance a with disks. The
// disks' file sizes must be known (WriteOVA fills them); Descriptor on its
// own takes Disk.Path's size from the file system.
func Descriptor(a Appliance, disks []Disk) ([]byte, error) {
	a = a.withDefaults()
	if err := a.validate(disks); err != nil {
		return nil, err
	}
	disks, err := statDisks(disks)
	if err != nil {
		return nil, err
	}
	return marshalEnvelope(envelope(a, disks))
}

// envelope models the descriptor with govmomi's types; marshalEnvelope adds
// the namespaces those types lack.
func envelope(a Appliance, disks []Disk) *ovf.Envelope {
	e := &ovf.Envelope{
		Disk:    &ovf.DiskSection{Section: ovf.Section{Info: "Virtual disk information"}},
		Network: &ovf.NetworkSection{Section: ovf.Section{Info: "The list of logical networks"}},
	}
	e.Network.Networks = []ovf.Network{{Name: a.Network, Description: "The network the connector's NIC is connected to"}}

	vs := &ovf.VirtualSystem{Content: ovf.Content{ID: a.Name, Info: "A virtual machine", Name: ptr(a.Name)}}
	e.VirtualSystem = vs
	if a.Description != "" {
		vs.Annotation = &ovf.AnnotationSection{Section: ovf.Section{Info: "A human-readable annotation"}, Annotation: a.Description}
	}
	vs.Product = []ovf.ProductSection{productSection(a)}
	vs.OperatingSystem = &ovf.OperatingSystemSection{
		Section: ovf.Section{Info: "The kind of installed guest operating system"},
		ID:      101, // CIM "Linux 64-Bit"
		OSType:  ptr(a.OSType),
	}

	hw := ovf.VirtualHardwareSection{
		Section:   ovf.Section{Info: "Virtual hardware requirements"},
		Transport: ptr(transports),
		System: &ovf.VirtualSystemSettingData{CIMVirtualSystemSettingData: ovf.CIMVirtualSystemSettingData{
			ElementName:             "Virtual Hardware Family",
			InstanceID:              "0",
			VirtualSystemIdentifier: ptr(a.Name),
			VirtualSystemType:       ptr(a.HardwareVersion),
		}},
	}
	id := 0
	item := func(rt ovf.CIMResourceType, name, desc string) ovf.ResourceAllocationSettingData {
		id++
		return ovf.ResourceAllocationSettingData{CIMResourceAllocationSettingData: ovf.CIMResourceAllocationSettingData{
			ElementName: name, InstanceID: strconv.Itoa(id), ResourceType: &rt, Description: ptr(desc),
		}}
	}
	cpu := item(ovf.Processor, fmt.Sprintf("%d virtual CPU(s)", a.CPUs), "Number of Virtual CPUs")
	cpu.AllocationUnits = ptr("hertz * 10^6")
	cpu.VirtualQuantity = ptr(uint(a.CPUs))
	mem := item(ovf.Memory, fmt.Sprintf("%dMB of memory", a.MemoryMiB), "Memory Size")
	mem.AllocationUnits = ptr("byte * 2^20")
	mem.VirtualQuantity = ptr(uint(a.MemoryMiB))
	scsi := item(ovf.ParallelScsiHba, "SCSI controller 0", "SCSI Controller")
	scsi.Address = ptr("0")
	scsi.ResourceSubType = ptr(scsiSubType[a.SCSIController])
	hw.Item = append(hw.Item, cpu, mem, scsi)

	for i, d := range disks {
		fileID, diskID := fmt.Sprintf("file%d", i+1), fmt.Sprintf("vmdisk%d", i+1)
		e.References = append(e.References, ovf.File{ID: fileID, Href: d.Name, Size: uint(d.size)})
		desc := ovf.VirtualDiskDesc{DiskID: diskID, FileRef: ptr(fileID), Format: ptr(streamOptimized)}
		desc.Capacity, desc.CapacityAllocationUnits = capacity(d.Capacity)
		if d.PopulatedSize > 0 {
			desc.PopulatedSize = ptr(int(d.PopulatedSize))
		}
		e.Disk.Disks = append(e.Disk.Disks, desc)
		disk := item(ovf.DiskDrive, fmt.Sprintf("Hard disk %d", i+1), "Hard disk")
		disk.AddressOnParent = ptr(strconv.Itoa(i))
		disk.HostResource = []string{"ovf:/disk/" + diskID}
		disk.Parent = ptr(scsi.InstanceID)
		hw.Item = append(hw.Item, disk)
	}

	nic := item(ovf.EthernetAdapter, "Network adapter 1", fmt.Sprintf("VmxNet3 ethernet adapter on %q", a.Network))
	nic.AddressOnParent = ptr("7")
	nic.AutomaticAllocation = ptr(true)
	nic.Connection = []string{a.Network}
	nic.ResourceSubType = ptr("VmxNet3")
	if a.MAC != "" {
		// A MAC in rasd:Address is what vSphere exports for a manual MAC and
		// reads back on import (ovftool's "mac" export flag).
		nic.Address = ptr(strings.ToLower(a.MAC))
	}
	hw.Item = append(hw.Item, nic)

	hw.Config = []ovf.Config{
		{Required: ptr(false), Key: "firmware", Value: a.Firmware},
		{Required: ptr(false), Key: "tools.syncTimeWithHost", Value: "false"},
	}
	vs.VirtualHardware = []ovf.VirtualHardwareSection{hw}
	return e
}

func productSection(a Appliance) ovf.ProductSection {
	ps := ovf.ProductSection{
		Section: ovf.Section{Info: "Settings the connector reads at first boot"},
		Product: a.Product, Vendor: a.Vendor, Version: a.Version, FullVersion: a.Version,
	}
	for _, p := range a.Properties {
		prop := ovf.Property{
			Key: p.Key, Type: "string", UserConfigurable: ptr(true), Default: ptr(p.Default),
			Label: ptr(p.Label), Description: ptr(p.Description),
		}
		if p.Password {
			prop.Password = ptr(true)
		}
		if len(p.Choices) > 0 {
			prop.Qualifiers = ptr(valueMap(p.Choices))
		}
		ps.Property = append(ps.Property, prop)
		if n := len(ps.Items); n == 0 || lastCategory(ps.Items) != p.Category {
			ps.Items = append(ps.Items, ovf.ProductSectionItem{Category: ptr(p.Category)})
		}
		ps.Items = append(ps.Items, ovf.ProductSectionItem{Property: &ps.Property[len(ps.Property)-1]})
	}
	// Items point into Property; rebuild them after the slice stopped growing.
	j := 0
	for i := range ps.Items {
		if ps.Items[i].Property != nil {
			ps.Items[i].Property = &ps.Property[j]
			j++
		}
	}
	return ps
}

// capacity expresses bytes the way ovftool does: in GiB or MiB when exact,
// else in bytes (no unit attribute).
func capacity(bytes int64) (string, *string) {
	switch {
	case bytes%(1<<30) == 0:
		return strconv.FormatInt(bytes>>30, 10), ptr("byte * 2^30")
	case bytes%(1<<20) == 0:
		return strconv.FormatInt(bytes>>20, 10), ptr("byte * 2^20")
	}
	return strconv.FormatInt(bytes, 10), nil
}

func lastCategory(items []ovf.ProductSectionItem) string {
	for i := len(items) - 1; i >= 0; i-- {
		if items[i].Category != nil {
			return *items[i].Category
		}
	}
	return ""
}

// valueMap renders choices as an OVF qualifier: ValueMap{"DHCP","Static"}.
func valueMap(choices []string) string {
	q := make([]string, len(choices))
	for i, c := range choices {
		q[i] = strconv.Quote(c)
	}
	return "ValueMap{" + strings.Join(q, ",") + "}"
}

func ptr[T any](v T) *T { return &v }

// marshalEnvelope writes e with the ovf, rasd, vssd and vmw namespaces that
// vSphere requires, elements in schema order (rasd elements alphabetical).
// It covers the parts of ovf.Envelope that envelope fills.
func marshalEnvelope(e *ovf.Envelope) ([]byte, error) {
	w := &xmlWriter{}
	w.b.WriteString(xml.Header)
	w.open("Envelope", "xmlns", nsOVF, "xmlns:cim", nsCIM, "xmlns:ovf", nsOVF, "xmlns:rasd", nsRASD,
		"xmlns:vmw", nsVMW, "xmlns:vssd", nsVSSD, "xmlns:xsi", nsXSI)
	w.open("References")
	for _, f := range e.References {
		w.empty("File", "ovf:href", f.Href, "ovf:id", f.ID, "ovf:size", strconv.FormatUint(uint64(f.Size), 10))
	}
	w.close("References")

	w.open("DiskSection")
	w.elem("Info", e.Disk.Info)
	for _, d := range e.Disk.Disks {
		attrs := []string{"ovf:capacity", d.Capacity}
		if d.CapacityAllocationUnits != nil {
			attrs = append(attrs, "ovf:capacityAllocationUnits", *d.CapacityAllocationUnits)
		}
		attrs = append(attrs, "ovf:diskId", d.DiskID, "ovf:fileRef", deref(d.FileRef), "ovf:format", deref(d.Format))
		if d.PopulatedSize != nil {
			attrs = append(attrs, "ovf:populatedSize", strconv.Itoa(*d.PopulatedSize))
		}
		w.empty("Disk", attrs...)
	}
	w.close("DiskSection")

	w.open("NetworkSection")
	w.elem("Info", e.Network.Info)
	for _, n := range e.Network.Networks {
		w.open("Network", "ovf:name", n.Name)
		w.elem("Description", n.Description)
		w.close("Network")
	}
	w.close("NetworkSection")

	vs := e.VirtualSystem
	w.open("VirtualSystem", "ovf:id", vs.ID)
	w.elem("Info", vs.Info)
	w.elem("Name", deref(vs.Name))
	if a := vs.Annotation; a != nil {
		w.open("AnnotationSection")
		w.elem("Info", a.Info)
		w.elem("Annotation", a.Annotation)
		w.close("AnnotationSection")
	}
	for _, p := range vs.Product {
		writeProduct(w, p)
	}
	if os := vs.OperatingSystem; os != nil {
		w.open("OperatingSystemSection", "ovf:id", strconv.Itoa(int(os.ID)), "vmw:osType", deref(os.OSType))
		w.elem("Info", os.Info)
		w.close("OperatingSystemSection")
	}
	for _, hw := range vs.VirtualHardware {
		writeHardware(w, hw)
	}
	w.close("VirtualSystem")
	w.close("Envelope")
	return w.b.Bytes(), nil
}

func writeProduct(w *xmlWriter, p ovf.ProductSection) {
	w.open("ProductSection")
	w.elem("Info", p.Info)
	w.elem("Product", p.Product)
	if p.Vendor != "" {
		w.elem("Vendor", p.Vendor)
	}
	if p.Version != "" {
		w.elem("Version", p.Version)
		w.elem("FullVersion", p.FullVersion)
	}
	for _, it := range p.Items {
		if it.Category != nil {
			w.elem("Category", *it.Category)
			continue
		}
		pr := it.Property
		attrs := []string{"ovf:key", pr.Key, "ovf:type", pr.Type}
		if pr.Qualifiers != nil {
			attrs = append(attrs, "ovf:qualifiers", *pr.Qualifiers)
		}
		if pr.Password != nil {
			attrs = append(attrs, "ovf:password", strconv.FormatBool(*pr.Password))
		}
		attrs = append(attrs, "ovf:userConfigurable", strconv.FormatBool(deref(pr.UserConfigurable)), "ovf:value", deref(pr.Default))
		w.open("Property", attrs...)
		w.elem("Label", deref(pr.Label))
		w.elem("Description", deref(pr.Description))
		w.close("Property")
	}
	w.close("ProductSection")
}

func writeHardware(w *xmlWriter, hw ovf.VirtualHardwareSection) {
	w.open("VirtualHardwareSection", "ovf:transport", deref(hw.Transport))
	w.elem("Info", hw.Info)
	s := hw.System
	w.open("System")
	w.elem("vssd:ElementName", s.ElementName)
	w.elem("vssd:InstanceID", s.InstanceID)
	w.elem("vssd:VirtualSystemIdentifier", deref(s.VirtualSystemIdentifier))
	w.elem("vssd:VirtualSystemType", deref(s.VirtualSystemType))
	w.close("System")
	for _, it := range hw.Item {
		w.open("Item")
		opt := func(name string, v *string) {
			if v != nil {
				w.elem("rasd:"+name, *v)
			}
		}
		opt("Address", it.Address)
		opt("AddressOnParent", it.AddressOnParent)
		opt("AllocationUnits", it.AllocationUnits)
		if it.AutomaticAllocation != nil {
			w.elem("rasd:AutomaticAllocation", strconv.FormatBool(*it.AutomaticAllocation))
		}
		for _, c := range it.Connection {
			w.elem("rasd:Connection", c)
		}
		opt("Description", it.Description)
		w.elem("rasd:ElementName", it.ElementName)
		for _, h := range it.HostResource {
			w.elem("rasd:HostResource", h)
		}
		w.elem("rasd:InstanceID", it.InstanceID)
		opt("Parent", it.Parent)
		opt("ResourceSubType", it.ResourceSubType)
		w.elem("rasd:ResourceType", strconv.Itoa(int(*it.ResourceType)))
		if it.VirtualQuantity != nil {
			w.elem("rasd:VirtualQuantity", strconv.FormatUint(uint64(*it.VirtualQuantity), 10))
		}
		w.close("Item")
	}
	for _, c := range hw.Config {
		w.empty("vmw:Config", "ovf:required", strconv.FormatBool(deref(c.Required)), "vmw:key", c.Key, "vmw:value", c.Value)
	}
	w.close("VirtualHardwareSection")
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// Escapers for XML character data and double-quoted attribute values; they
// leave apostrophes and (in text) quotes alone so the descriptor stays
// readable.
var (
	textEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "\r", "&#xD;")
	attrEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;",
		"\n", "&#xA;", "\r", "&#xD;", "\t", "&#x9;")
)

// xmlWriter writes indented XML with escaped text and attributes. Names are
// written as given (prefix included); the caller keeps elements balanced.
type xmlWriter struct {
	b     bytes.Buffer
	depth int
}

func (w *xmlWriter) start(name string, attrs []string) {
	w.b.WriteString(strings.Repeat("  ", w.depth))
	w.b.WriteString("<" + name)
	for i := 0; i+1 < len(attrs); i += 2 {
		w.b.WriteString(" " + attrs[i] + `="` + attrEscaper.Replace(attrs[i+1]) + `"`)
	}
}

func (w *xmlWriter) open(name string, attrs ...string) {
	w.start(name, attrs)
	w.b.WriteString(">\n")
	w.depth++
}

func (w *xmlWriter) empty(name string, attrs ...string) {
	w.start(name, attrs)
	w.b.WriteString("/>\n")
}

func (w *xmlWriter) elem(name, text string, attrs ...string) {
	w.start(name, attrs)
	w.b.WriteString(">" + textEscaper.Replace(text) + "</" + name + ">\n")
}

func (w *xmlWriter) close(name string) {
	w.depth--
	w.b.WriteString(strings.Repeat("  ", w.depth) + "</" + name + ">\n")
}
