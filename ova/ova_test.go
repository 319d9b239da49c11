package ova

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/ovf"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/internal/testtool"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func testAppliance() Appliance {
	return Appliance{
		Name:        "outpost-connector",
		Product:     "Outpost Connector",
		Vendor:      "Outpost",
		Version:     "1.2.3",
		Description: "Outpost connector appliance: calls home over 443 & enrolls itself <first boot>.",
		MAC:         "00:50:56:12:34:AB",
	}
}

// fixedDisk writes a small file standing in for a disk whose contents do not
// matter (the descriptor only needs its size).
func fixedDisk(t testing.TB) Disk {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.vmdk")
	if err := os.WriteFile(p, bytes.Repeat([]byte("outpost\n"), 512), 0o644); err != nil {
		t.Fatal(err)
	}
	return Disk{Name: "outpost-connector-disk1.vmdk", Path: p, Capacity: 8 << 30, PopulatedSize: 1234567}
}

// streamOptimizedDisk makes a real streamOptimized VMDK with qemu-img from a
// raw file with some data and a hole.
func streamOptimizedDisk(t *testing.T) Disk {
	t.Helper()
	testtool.Need(t, "qemu-img")
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	f, err := os.Create(raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(bytes.Repeat([]byte("outpost disk data "), 4096)); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(4 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	vmdk := filepath.Join(dir, "disk.vmdk")
	run(t, dir, "qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, vmdk)
	return Disk{Name: "outpost-connector-disk1.vmdk", Path: vmdk, Capacity: 4 << 20, PopulatedSize: 128 << 10}
}

func TestDescriptorGolden(t *testing.T) {
	got, err := Descriptor(testAppliance(), []Disk{fixedDisk(t)})
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "outpost-connector.ovf")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./ova -run TestDescriptorGolden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("descriptor differs from %s (go test ./ova -update to accept):\n%s", golden, got)
	}
}

// TestDescriptorParsedByGovmomi reads the descriptor back with govmomi's
// parser and its OVF-to-ConfigSpec conversion, which vSphere tools share.
func TestDescriptorParsedByGovmomi(t *testing.T) {
	a := testAppliance()
	a.CPUs, a.MemoryMiB, a.SCSIController, a.HardwareVersion = 4, 2048, "pvscsi", "vmx-13"
	b, err := Descriptor(a, []Disk{fixedDisk(t)})
	if err != nil {
		t.Fatal(err)
	}
	env, err := ovf.Unmarshal(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("govmomi cannot parse the descriptor: %v", err)
	}
	vs := env.VirtualSystem
	if vs == nil || deref(vs.Name) != "outpost-connector" {
		t.Fatalf("virtual system name: got %+v", vs)
	}
	hw := vs.VirtualHardware[0]
	if got := deref(hw.Transport); got != "com.vmware.guestInfo iso" {
		t.Errorf("transport = %q, want both guestinfo and iso", got)
	}
	if got := deref(hw.System.VirtualSystemType); got != "vmx-13" {
		t.Errorf("hardware version = %q", got)
	}
	var nicMAC, scsi string
	for _, it := range hw.Item {
		switch *it.ResourceType {
		case ovf.EthernetAdapter:
			nicMAC = deref(it.Address)
			if deref(it.ResourceSubType) != "VmxNet3" || len(it.Connection) != 1 || it.Connection[0] != "VM Network" {
				t.Errorf("NIC item: %+v", it)
			}
		case ovf.ParallelScsiHba:
			scsi = deref(it.ResourceSubType)
		}
	}
	if nicMAC != "00:50:56:12:34:ab" {
		t.Errorf("NIC rasd:Address = %q, want the manual MAC 00:50:56:12:34:ab", nicMAC)
	}
	if scsi != "VirtualSCSI" {
		t.Errorf("SCSI controller subtype = %q, want VirtualSCSI (pvscsi)", scsi)
	}
	d := env.Disk.Disks[0]
	if d.Capacity != "8" || deref(d.CapacityAllocationUnits) != "byte * 2^30" || deref(d.PopulatedSize) != 1234567 {
		t.Errorf("disk: capacity %s %s, populated %d", d.Capacity, deref(d.CapacityAllocationUnits), deref(d.PopulatedSize))
	}
	if env.References[0].Size != 4096 || env.References[0].Href != "outpost-connector-disk1.vmdk" {
		t.Errorf("file reference: %+v", env.References[0])
	}

	spec, err := env.ToConfigSpec()
	if err != nil {
		t.Fatalf("govmomi ToConfigSpec: %v", err)
	}
	if spec.NumCPUs != 4 || spec.MemoryMB != 2048 || spec.Firmware != "efi" || spec.GuestId != DefaultOSType {
		t.Errorf("config spec: cpus %d memory %d firmware %q guest %q", spec.NumCPUs, spec.MemoryMB, spec.Firmware, spec.GuestId)
	}

	ps := vs.Product[0]
	if ps.Product != "Outpost Connector" || ps.Vendor != "Outpost" || ps.Version != "1.2.3" {
		t.Errorf("product section: %+v", ps)
	}
	props := map[string]ovf.Property{}
	cats := map[string]string{}
	for _, pc := range ps.PropertiesWithCategory() {
		props[pc.Property.Key] = pc.Property
		cats[pc.Property.Key] = pc.Category
	}
	for _, key := range []string{appliance.PropProvisionKey, appliance.PropHostname, appliance.PropIPv4Mode, appliance.PropIPv4Address, appliance.PropIPv4Gateway,
		appliance.PropDNSServers, appliance.PropDNSSearch, appliance.PropNTPServers, appliance.PropProxy} {
		p, ok := props[key]
		if !ok {
			t.Errorf("property %s missing", key)
			continue
		}
		if !deref(p.UserConfigurable) || deref(p.Label) == "" || deref(p.Description) == "" || cats[key] == "" {
			t.Errorf("property %s: want user-configurable with label, description and category; got %+v in %q", key, p, cats[key])
		}
		if got, want := deref(p.Password), key == appliance.PropProvisionKey; got != want {
			t.Errorf("property %s: password = %v, want %v", key, got, want)
		}
	}
	if q := deref(props[appliance.PropIPv4Mode].Qualifiers); q != `ValueMap{"DHCP","Static"}` {
		t.Errorf("ipv4 mode qualifiers = %q", q)
	}
	if v := deref(props[appliance.PropIPv4Mode].Default); v != "DHCP" {
		t.Errorf("ipv4 mode default = %q", v)
	}
}

func TestValidateNamesEveryProblem(t *testing.T) {
	a := Appliance{Name: "bad name/", Description: "bell\x07", CPUs: -1, MemoryMiB: 100, MAC: "00:50:56:zz:00:01", Firmware: "uefi",
		HardwareVersion: "14", SCSIController: "ide",
		Properties: []Property{{Key: "a"}, {Key: "a"}, {Key: "m", Choices: []string{"x"}, Default: "y"}}}
	_, err := Descriptor(a, []Disk{{Name: "d.vmdk", Path: "/nonexistent", Capacity: 0}})
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{"appliance name", "cpus", "memory", "mac", "firmware", "hardware version",
		"scsi controller", "description: character U+0007", `"a" is declared twice`, `default "y"`, "disks[0].capacity"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %q:\n%v", want, err)
		}
	}
	if _, err := Descriptor(testAppliance(), nil); err == nil || !strings.Contains(err.Error(), "no disk") {
		t.Errorf("no disks: %v", err)
	}
	d := fixedDisk(t)
	d.Path = filepath.Join(t.TempDir(), "missing.vmdk")
	if _, err := Descriptor(testAppliance(), []Disk{d}); err == nil || !strings.Contains(err.Error(), "missing.vmdk") {
		t.Errorf("missing disk file: %v", err)
	}
}

func writeOVA(t *testing.T, a Appliance, disks []Disk, opt PackOptions) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), a.Name+".ova")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteOVA(f, a, disks, opt); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

var epoch = time.Unix(1700000000, 0)

func TestOVAMembersAndManifest(t *testing.T) {
	testtool.Need(t, "tar", "sha256sum")
	disk := streamOptimizedDisk(t)
	ova := writeOVA(t, testAppliance(), []Disk{disk}, PackOptions{ModTime: epoch})

	listing := run(t, "", "tar", "--numeric-owner", "--full-time", "-tvf", ova)
	lines := strings.Split(strings.TrimSpace(listing), "\n")
	wantOrder := []string{"outpost-connector.ovf", "outpost-connector.mf", "outpost-connector-disk1.vmdk"}
	if len(lines) != len(wantOrder) {
		t.Fatalf("tar tvf:\n%s", listing)
	}
	for i, l := range lines {
		f := strings.Fields(l)
		if f[len(f)-1] != wantOrder[i] {
			t.Errorf("member %d is %s, want %s", i, f[len(f)-1], wantOrder[i])
		}
		if f[0] != "-rw-r--r--" || f[1] != "0/0" || !strings.Contains(l, "2023-11-14 22:13:20") {
			t.Errorf("member %d: want mode 0644, owner 0/0, mtime 2023-11-14 22:13:20; got %s", i, l)
		}
	}
	raw, err := os.ReadFile(ova)
	if err != nil {
		t.Fatal(err)
	}
	if magic := string(raw[257:265]); magic != "ustar\x0000" {
		t.Errorf("first header magic %q, want POSIX ustar", magic)
	}
	if bytes.Contains(raw, []byte("PaxHeaders")) {
		t.Error("archive has PAX headers")
	}

	dir := t.TempDir()
	run(t, dir, "tar", "-xf", ova)
	mf, err := os.ReadFile(filepath.Join(dir, "outpost-connector.mf"))
	if err != nil {
		t.Fatal(err)
	}
	// ESXi/govc form → sha256sum's "HEX  NAME" form, checked by sha256sum -c.
	var check strings.Builder
	for _, l := range strings.Split(strings.TrimSuffix(string(mf), "\n"), "\n") {
		var name, sum string
		if n, _ := fmtSscanManifest(l, &name, &sum); n != 2 {
			t.Fatalf("manifest line %q is not SHA256(name)= hex", l)
		}
		check.WriteString(sum + "  " + name + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "check.sha256"), []byte(check.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out := run(t, dir, "sha256sum", "-c", "check.sha256")
	if strings.Count(out, ": OK") != 2 {
		t.Errorf("sha256sum -c:\n%s", out)
	}
	if run(t, "", "qemu-img", "info", filepath.Join(dir, "outpost-connector-disk1.vmdk")) == "" {
		t.Error("qemu-img info printed nothing for the packed disk")
	}
	if err := run2(t, dir, "cmp", filepath.Join(dir, "outpost-connector-disk1.vmdk"), disk.Path); err != nil {
		t.Errorf("packed disk differs from its source: %v", err)
	}
}

// fmtSscanManifest parses "SHA256(name)= hex" exactly.
func fmtSscanManifest(line string, name, sum *string) (int, error) {
	rest, ok := strings.CutPrefix(line, "SHA256(")
	if !ok {
		return 0, nil
	}
	i := strings.Index(rest, ")= ")
	if i < 0 {
		return 0, nil
	}
	*name, *sum = rest[:i], rest[i+3:]
	if len(*sum) != 64 || strings.ToLower(*sum) != *sum {
		return 1, nil
	}
	return 2, nil
}

func run2(t *testing.T, dir, name string, args ...string) error {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	return cmd.Run()
}

func TestOVAReproducible(t *testing.T) {
	disk := fixedDisk(t)
	a := testAppliance()
	one := writeOVA(t, a, []Disk{disk}, PackOptions{ModTime: epoch})
	two := writeOVA(t, a, []Disk{disk}, PackOptions{ModTime: epoch})
	later := writeOVA(t, a, []Disk{disk}, PackOptions{ModTime: epoch.Add(time.Hour)})
	b1, _ := os.ReadFile(one)
	b2, _ := os.ReadFile(two)
	b3, _ := os.ReadFile(later)
	if len(b1) == 0 || !bytes.Equal(b1, b2) {
		t.Error("same inputs and SOURCE_DATE_EPOCH gave different OVAs")
	}
	if bytes.Equal(b1, b3) {
		t.Error("a different SOURCE_DATE_EPOCH did not change the OVA: mtime is not taken from PackOptions")
	}
}

func TestOVADiskDigestChecked(t *testing.T) {
	disk := fixedDisk(t)
	disk.SHA256 = strings.Repeat("0", 64)
	err := WriteOVA(&bytes.Buffer{}, testAppliance(), []Disk{disk}, PackOptions{})
	if err == nil || !strings.Contains(err.Error(), "does not match the manifest") {
		t.Errorf("wrong precomputed digest: %v", err)
	}
}

// TestDescriptorCoversModel checks that the namespaced writer drops nothing
// of the govmomi model: parsing the output gives the model back.
func TestDescriptorCoversModel(t *testing.T) {
	a := testAppliance().withDefaults()
	disks, err := statDisks([]Disk{fixedDisk(t), fixedDisk(t)})
	if err != nil {
		t.Fatal(err)
	}
	disks[1].Name, disks[1].Capacity, disks[1].PopulatedSize = "data.vmdk", 3<<20+512, 0
	model := envelope(a, disks)
	b, err := marshalEnvelope(model)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ovf.Unmarshal(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	// Unmarshal sets a ProductSection's Category to its last category.
	model.VirtualSystem.Product[0].Category = lastCategory(model.VirtualSystem.Product[0].Items)
	want, _ := json.MarshalIndent(model, "", " ")
	got, _ := json.MarshalIndent(parsed, "", " ")
	if !bytes.Equal(want, got) {
		t.Errorf("parsed descriptor differs from the model:\nmodel:  %s\nparsed: %s", want, got)
	}
	if d := parsed.Disk.Disks[1]; d.Capacity != "3146240" || d.CapacityAllocationUnits != nil || d.PopulatedSize != nil {
		t.Errorf("second disk: %+v", d)
	}
}

func TestWriteOVAFileLeavesNothingOnFailure(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "x.ova")
	d := fixedDisk(t)
	d.SHA256 = strings.Repeat("0", 64) // fails while copying the disk
	if err := WriteOVAFile(out, testAppliance(), []Disk{d}, PackOptions{}); err == nil {
		t.Fatal("want an error")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
	d.SHA256 = ""
	if err := WriteOVAFile(out, testAppliance(), []Disk{d}, PackOptions{ModTime: epoch}); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(t.TempDir(), "y.ova")
	f, _ := os.Create(want)
	if err := WriteOVA(f, testAppliance(), []Disk{d}, PackOptions{ModTime: epoch}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	a, _ := os.ReadFile(out)
	b, _ := os.ReadFile(want)
	if !bytes.Equal(a, b) {
		t.Error("WriteOVAFile and WriteOVA wrote different archives")
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("output mode: %v %v", fi.Mode(), err)
	}
	if err := WriteOVAFile(filepath.Join(dir, "missing", "z.ova"), testAppliance(), []Disk{d}, PackOptions{}); err == nil || !strings.Contains(err.Error(), "writable") {
		t.Errorf("unwritable directory: %v", err)
	}
}
