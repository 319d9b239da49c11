package builder

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/outpost-appliance/outpost/appliance"
)

// Spec is an appliance definition: what images/connector/image.yaml says.
// Zero values mean "use the default"; SetDefaults fills them and Validate
// checks the result.
type Spec struct {
	Name        string     `yaml:"name"`
	Version     string     `yaml:"version"`
	Description string     `yaml:"description,omitempty"`
	Hardware    Hardware   `yaml:"hardware"`
	NIC         NIC        `yaml:"nic"`
	Properties  []Property `yaml:"properties,omitempty"`
	Rootfs      Rootfs     `yaml:"rootfs"`
	// Files are added to the root filesystem (or replace what it has);
	// Remove names paths left out of it (path.Match patterns).
	Files  []SpecFile `yaml:"files,omitempty"`
	Remove []string   `yaml:"remove,omitempty"`

	// FS holds the files that Files[].Src names, relative to the spec's
	// directory: the spec's directory on disk, or the embedded images for
	// the embedded spec. Set by the loader.
	FS fs.FS `yaml:"-"`

	// Path is the file the spec was read from ("" for an in-memory spec);
	// relative rootfs paths are resolved against its directory.
	Path string `yaml:"-"`
}

// Hardware is the virtual hardware the images declare.
type Hardware struct {
	CPUs      int                `yaml:"cpus"`
	MemoryMiB int                `yaml:"memory"` // MiB
	Disk      Disk               `yaml:"disk"`
	NICs      int                `yaml:"nics"`
	Firmware  appliance.Firmware `yaml:"firmware"` // "uefi"
	// VirtualHardware is the VMware virtual hardware version the OVA
	// declares (vmx-NN); the default vmx-14 imports on ESXi 6.7 and later.
	VirtualHardware string `yaml:"virtual_hardware,omitempty"`
}

// Disk is the appliance's single virtual disk.
type Disk struct {
	Size         Size   `yaml:"size"`         // e.g. "8GiB"
	Provisioning string `yaml:"provisioning"` // "thin" or "thick"
}

// NIC configures the appliance's network interface.
type NIC struct {
	// MAC is the static MAC in VMware's manual range; empty means derived
	// from the appliance name (appliance.DeriveMAC).
	MAC string `yaml:"mac,omitempty"`
}

// Property is a deployment-time setting the admin is prompted for at import
// (an OVF ProductSection property). Keys are defined by package appliance
// (outpost.provision_key, outpost.hostname, outpost.ipv4.mode, …).
type Property struct {
	Key         string `yaml:"key"`
	Label       string `yaml:"label"`
	Description string `yaml:"description,omitempty"`
	Category    string `yaml:"category,omitempty"`
	Type        string `yaml:"type,omitempty"` // string (default), boolean, int
	Default     string `yaml:"default,omitempty"`
	Password    bool   `yaml:"password,omitempty"`
}

// Rootfs names where the root filesystem comes from: a directory or a tar
// archive (plain or gzip). Relative paths are relative to the spec file.
// Both empty means it must be given on the command line.
type Rootfs struct {
	Dir string `yaml:"dir,omitempty"`
	Tar string `yaml:"tar,omitempty"`
	// Debian, when set, builds the tree from packages (package
	// builder/rootfs, with mmdebstrap).
	Debian *Debian `yaml:"debian,omitempty"`
}

// Debian names a root filesystem made from Debian packages.
type Debian struct {
	Suite    string   `yaml:"suite"`
	Mirror   string   `yaml:"mirror,omitempty"`
	Variant  string   `yaml:"variant,omitempty"` // mmdebstrap variant; default minbase
	Packages []string `yaml:"packages"`
}

// SpecFile is one entry of the spec's files: exactly one of Src, Go,
// Content, Link or Dir says what it is.
type SpecFile struct {
	// Path is absolute in the appliance.
	Path string `yaml:"path"`
	// Src is a file relative to the spec's directory.
	Src string `yaml:"src,omitempty"`
	// Go is a main package of the outpost module (./cmd/outpost-firstboot),
	// built static from the checkout the image is built in.
	Go string `yaml:"go,omitempty"`
	// Content is the file's text.
	Content *string `yaml:"content,omitempty"`
	// Link makes a symlink to this target.
	Link string `yaml:"link,omitempty"`
	// Dir makes a directory.
	Dir bool `yaml:"dir,omitempty"`
	// Mode is octal: default 0644, 0755 for Go binaries and directories.
	Mode string `yaml:"mode,omitempty"`
}

// FileMode returns f's mode, from Mode or the default for its kind. Call
// it on a validated spec.
func (f SpecFile) FileMode() fs.FileMode {
	var m fs.FileMode = 0o644
	if f.Go != "" || f.Dir {
		m = 0o755
	}
	if f.Mode != "" {
		n, _ := strconv.ParseUint(f.Mode, 8, 32)
		m = fs.FileMode(n) & (fs.ModePerm | 0o7000)
		if n&0o4000 != 0 {
			m = m&fs.ModePerm | fs.ModeSetuid
		}
	}
	switch {
	case f.Dir:
		return m | fs.ModeDir
	case f.Link != "":
		return fs.ModeSymlink | 0o777
	}
	return m
}

// SetDefaults fills every unset field with the appliance default (package
// appliance). It does not validate.
func (s *Spec) SetDefaults() {
	h := &s.Hardware
	if h.CPUs == 0 {
		h.CPUs = appliance.DefaultCPUs
	}
	if h.MemoryMiB == 0 {
		h.MemoryMiB = appliance.DefaultMemoryMiB
	}
	if h.Disk.Size == 0 {
		h.Disk.Size = Size(appliance.DefaultDiskBytes)
	}
	if h.Disk.Provisioning == "" {
		h.Disk.Provisioning = appliance.DefaultProvisioning
	}
	if h.NICs == 0 {
		h.NICs = appliance.NICs
	}
	if h.Firmware == "" {
		h.Firmware = appliance.DefaultFirmware
	}
	if h.VirtualHardware == "" {
		h.VirtualHardware = appliance.DefaultVirtualHardware
	}
	for i := range s.Properties {
		if s.Properties[i].Type == "" {
			s.Properties[i].Type = string(appliance.TypeString)
		}
	}
}

// MAC returns the NIC's MAC: the one the spec sets, or the one derived from
// the appliance name. Call it on a validated spec.
func (s *Spec) MAC() (appliance.MAC, error) {
	if s.NIC.MAC == "" {
		return appliance.DeriveMAC(s.Name), nil
	}
	return appliance.ParseMAC(s.NIC.MAC)
}

// RootfsPath returns the rootfs source named by the spec, resolved against
// the spec's directory, or "" when the spec names none.
func (s *Spec) RootfsPath() string {
	p := s.Rootfs.Dir
	if p == "" {
		p = s.Rootfs.Tar
	}
	if p == "" || filepath.IsAbs(p) || s.Path == "" {
		return p
	}
	return filepath.Join(filepath.Dir(s.Path), p)
}

// Problem is one thing wrong with a spec, at a field path such as
// "hardware.memory" or "properties[2].key".
type Problem struct {
	Field   string
	Message string
}

// Problems is every problem found in a spec file; its Error lists them all,
// one per line, as "FILE: FIELD: MESSAGE".
type Problems struct {
	File  string
	Items []Problem
}

func (p *Problems) Error() string {
	var b strings.Builder
	for i, it := range p.Items {
		if i > 0 {
			b.WriteByte('\n')
		}
		file := p.File
		if file == "" {
			file = "image spec"
		}
		if it.Field == "" {
			fmt.Fprintf(&b, "%s: %s", file, it.Message)
		} else {
			fmt.Fprintf(&b, "%s: %s: %s", file, it.Field, it.Message)
		}
	}
	return b.String()
}

func (p *Problems) add(field, format string, a ...any) {
	p.Items = append(p.Items, Problem{Field: field, Message: fmt.Sprintf(format, a...)})
}

// LoadSpec reads, strictly decodes, defaults and validates the spec at path.
// Warnings (valid but questionable settings) are returned alongside.
func LoadSpec(path string) (*Spec, []string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("reading image spec: %w", err)
	}
	s, warnings, err := ParseSpec(path, b)
	if err != nil {
		return nil, nil, err
	}
	s.FS = os.DirFS(filepath.Dir(path))
	return s, warnings, nil
}

// ParseSpec decodes data (named path in messages) like LoadSpec.
func ParseSpec(path string, data []byte) (*Spec, []string, error) {
	s, err := decode(path, data)
	if err != nil {
		return nil, nil, err
	}
	s.SetDefaults()
	warnings, err := s.Validate()
	if err != nil {
		return nil, nil, err
	}
	return s, warnings, nil
}

func decode(path string, data []byte) (*Spec, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var s Spec
	err := dec.Decode(&s)
	if errors.Is(err, io.EOF) {
		return nil, &Problems{File: path, Items: []Problem{{Message: "empty file; an image spec needs at least name and version"}}}
	}
	if err != nil {
		var root yaml.Node
		_ = yaml.Unmarshal(data, &root) // only to name fields in messages
		lines := map[int]string{}
		keyLines(&root, "", lines)
		var te *yaml.TypeError
		if errors.As(err, &te) {
			p := &Problems{File: path}
			for _, e := range te.Errors {
				p.Items = append(p.Items, yamlProblem(e, lines))
			}
			return nil, p
		}
		return nil, &Problems{File: path, Items: []Problem{yamlProblem(err.Error(), lines)}}
	}
	if p := explicitZeros(path, data, &s); p != nil {
		return nil, p
	}
	s.Path = path
	return &s, nil
}

// explicitZeros reports hardware fields written as zero. Zero is what an
// omitted field decodes to, which SetDefaults replaces with the default; a
// zero written on purpose would be replaced silently too.
func explicitZeros(path string, data []byte, s *Spec) *Problems {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return nil
	}
	p := &Problems{File: path}
	for _, f := range []struct {
		path []string
		zero bool
		def  string
	}{
		{[]string{"hardware", "cpus"}, s.Hardware.CPUs == 0, strconv.Itoa(appliance.DefaultCPUs)},
		{[]string{"hardware", "memory"}, s.Hardware.MemoryMiB == 0, strconv.Itoa(appliance.DefaultMemoryMiB)},
		{[]string{"hardware", "disk", "size"}, s.Hardware.Disk.Size == 0, Size(appliance.DefaultDiskBytes).String()},
		{[]string{"hardware", "nics"}, s.Hardware.NICs == 0, strconv.Itoa(appliance.NICs)},
	} {
		if n := lookupNode(&root, f.path); n != nil && f.zero && n.Tag != "!!null" {
			p.add(strings.Join(f.path, "."), "%s is zero: give a value, or leave the field out for the default %s (line %d)", n.Value, f.def, n.Line)
		}
	}
	if len(p.Items) == 0 {
		return nil
	}
	return p
}

// lookupNode returns the value at the mapping keys path, or nil.
func lookupNode(n *yaml.Node, path []string) *yaml.Node {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, k := range path {
		if n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				next = n.Content[i+1]
			}
		}
		if next == nil {
			return nil
		}
		n = next
	}
	return n
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// keyLines records, for each mapping key and sequence item, the field path
// ("hardware.disk.size", "properties[1].key") at its line.
func keyLines(n *yaml.Node, prefix string, out map[int]string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			keyLines(c, prefix, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if prefix != "" {
				p = prefix + "." + k.Value
			}
			out[k.Line] = p
			if v.Line != k.Line || v.Kind != yaml.ScalarNode {
				keyLines(v, p, out)
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", prefix, i)
			if _, ok := out[c.Line]; !ok {
				out[c.Line] = p
			}
			keyLines(c, p, out)
		}
	}
}

// yamlProblem turns yaml.v3's "line 3: field cpu not found in type
// builder.Hardware" into a problem naming the field path and line, without Go
// types.
func yamlProblem(msg string, lines map[int]string) Problem {
	m := yamlLine.FindStringSubmatch(msg)
	if m == nil {
		return Problem{Message: strings.TrimPrefix(msg, "yaml: ")}
	}
	ln, _ := strconv.Atoi(m[1])
	return Problem{Field: lines[ln], Message: yamlText(m[2]) + " (line " + m[1] + ")"}
}

func yamlText(text string) string {
	if f, ok := strings.CutPrefix(text, "field "); ok {
		if name, _, ok := strings.Cut(f, " not found in type "); ok {
			text = fmt.Sprintf("unknown field %q (check the spelling against images/connector/image.yaml)", name)
		}
	}
	if strings.Contains(text, "cannot unmarshal") {
		text = strings.ReplaceAll(text, "!!str", "text")
		text = strings.ReplaceAll(text, "!!int", "number")
		text = strings.ReplaceAll(text, "!!seq", "list")
		text = strings.ReplaceAll(text, "!!map", "mapping")
		text = intoType.ReplaceAllString(text, "")
	}
	return text
}

var intoType = regexp.MustCompile(` into [\w.\[\]]+$`)

var (
	versionRe = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z.+~_-]{0,63}$`)
	keyRe     = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$`)
	debPkgRe  = regexp.MustCompile(`^[a-z0-9][a-z0-9.+-]+$`)
)

// Validate checks a defaulted spec and reports every problem at once.
func (s *Spec) Validate() (warnings []string, err error) {
	p := &Problems{File: s.Path}
	switch {
	case s.Name == "":
		p.add("name", "missing; give the appliance a name such as outpost-connector")
	default:
		if err := appliance.CheckName(s.Name); err != nil {
			p.add("name", "%v", err)
		}
	}
	switch {
	case s.Version == "":
		p.add("version", "missing; give a version such as 1.0.0")
	case !versionRe.MatchString(s.Version):
		p.add("version", "%q is not a valid version: use letters, digits and . + ~ _ - (at most 64)", s.Version)
	}
	h := s.Hardware
	if h.CPUs < 1 || h.CPUs > 64 {
		p.add("hardware.cpus", "%d vCPUs is impossible: use 1–64 (default %d)", h.CPUs, appliance.DefaultCPUs)
	}
	switch {
	case h.MemoryMiB < appliance.LabMemoryMiB:
		p.add("hardware.memory", "%d MiB is too little: the connector needs at least %d MiB (lab only) and %d MiB in production", h.MemoryMiB, appliance.LabMemoryMiB, appliance.DefaultMemoryMiB)
	case h.MemoryMiB > 1<<20:
		p.add("hardware.memory", "%d MiB is more than 1 TiB; memory is in MiB (4096 = 4 GiB)", h.MemoryMiB)
	case h.MemoryMiB%4 != 0:
		p.add("hardware.memory", "%d MiB is not a multiple of 4 MiB, which vSphere requires", h.MemoryMiB)
	case h.MemoryMiB < appliance.DefaultMemoryMiB:
		warnings = append(warnings, fmt.Sprintf("%s: hardware.memory: %d MiB is for labs only; production connectors need %d MiB", s.displayPath(), h.MemoryMiB, appliance.DefaultMemoryMiB))
	}
	if minDisk, maxDisk := Size(appliance.MinDiskBytes), Size(appliance.MaxDiskBytes); h.Disk.Size < minDisk || h.Disk.Size > maxDisk {
		p.add("hardware.disk.size", "%s is impossible: use %s–%s", h.Disk.Size, minDisk, maxDisk)
	}
	switch h.Disk.Provisioning {
	case appliance.ProvisioningThin:
	case appliance.ProvisioningThick:
		// The outputs would be the same bytes as thin: refuse rather than
		// accept a setting with no effect.
		p.add("hardware.disk.provisioning", "%s cannot be built into an image: an OVF descriptor gives the disk's capacity only, and thin or thick is chosen when the OVA is imported "+
			"(vSphere's \"Select virtual disk format\", ovftool --diskMode=thick, govc import.ova with \"DiskProvisioning\": \"thick\" in its options); use %s or leave the field out",
			h.Disk.Provisioning, appliance.ProvisioningThin)
	default:
		p.add("hardware.disk.provisioning", "%q is not known: use %s (thick is chosen at import)", h.Disk.Provisioning, appliance.ProvisioningThin)
	}
	if h.NICs != appliance.NICs {
		p.add("hardware.nics", "%d NICs: the connector appliance has exactly one NIC", h.NICs)
	}
	if h.Firmware != appliance.FirmwareUEFI {
		p.add("hardware.firmware", "%q is not supported: the disk boots with systemd-boot, so firmware must be %s", h.Firmware, appliance.FirmwareUEFI)
	}
	if err := appliance.CheckVirtualHardware(h.VirtualHardware); err != nil {
		p.add("hardware.virtual_hardware", "%v", err)
	}
	if s.NIC.MAC != "" {
		if _, err := appliance.ParseMAC(s.NIC.MAC); err != nil {
			p.add("nic.mac", "%v", err)
		}
	}
	if s.Rootfs.Dir != "" && s.Rootfs.Tar != "" {
		p.add("rootfs", "both dir and tar are set; give one")
	}
	if d := s.Rootfs.Debian; d != nil {
		if s.Rootfs.Dir != "" || s.Rootfs.Tar != "" {
			p.add("rootfs.debian", "set together with rootfs.dir or rootfs.tar; give one source")
		}
		if d.Suite == "" {
			p.add("rootfs.debian.suite", "missing; give a Debian suite such as bookworm")
		}
		for i, pk := range d.Packages {
			if !debPkgRe.MatchString(pk) {
				p.add(fmt.Sprintf("rootfs.debian.packages[%d]", i), "%q is not a Debian package name", pk)
			}
		}
	}
	paths := map[string]int{}
	for i, f := range s.Files {
		field := fmt.Sprintf("files[%d]", i)
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/" {
			p.add(field+".path", "%q must be an absolute, clean path inside the appliance such as /usr/local/bin/tool", f.Path)
		} else if j, dup := paths[f.Path]; dup {
			p.add(field+".path", "%s is already given by files[%d]", f.Path, j)
		}
		paths[f.Path] = i
		kinds := 0
		for _, set := range []bool{f.Src != "", f.Go != "", f.Content != nil, f.Link != "", f.Dir} {
			if set {
				kinds++
			}
		}
		if kinds != 1 {
			p.add(field, "give exactly one of src, go, content, link or dir")
		}
		if f.Src != "" && (path.IsAbs(f.Src) || !fs.ValidPath(path.Clean(f.Src))) {
			p.add(field+".src", "%q must be a relative path inside the spec's directory", f.Src)
		}
		if f.Go != "" && !strings.HasPrefix(f.Go, "./") {
			p.add(field+".go", "%q must be a package path of this module such as ./cmd/outpost-firstboot", f.Go)
		}
		if f.Mode != "" {
			if n, err := strconv.ParseUint(f.Mode, 8, 32); err != nil || n > 0o7777 {
				p.add(field+".mode", "%q is not an octal mode such as 0644", f.Mode)
			}
		}
	}
	for i, r := range s.Remove {
		if _, err := path.Match(r, ""); err != nil || !path.IsAbs(r) {
			p.add(fmt.Sprintf("remove[%d]", i), "%q must be an absolute path pattern such as /etc/ssh/ssh_host_*", r)
		}
	}
	seen := map[string]int{}
	for i, pr := range s.Properties {
		f := fmt.Sprintf("properties[%d]", i)
		switch {
		case pr.Key == "":
			p.add(f+".key", "missing")
		case !keyRe.MatchString(pr.Key):
			p.add(f+".key", "%q is not a valid key: use dot-separated lower-case words such as outpost.hostname", pr.Key)
		default:
			if j, dup := seen[pr.Key]; dup {
				p.add(f+".key", "%q is already defined by properties[%d]", pr.Key, j)
			}
			seen[pr.Key] = i
		}
		if pr.Label == "" {
			p.add(f+".label", "missing; the admin sees the label when prompted at import")
		}
		switch appliance.PropertyType(pr.Type) {
		case appliance.TypeString:
		case appliance.TypeBoolean:
			if pr.Default != "" && pr.Default != "true" && pr.Default != "false" {
				p.add(f+".default", "%q is not a boolean: use true or false", pr.Default)
			}
		case appliance.TypeInt:
			if _, err := strconv.ParseInt(pr.Default, 10, 64); pr.Default != "" && err != nil {
				p.add(f+".default", "%q is not an integer", pr.Default)
			}
		default:
			p.add(f+".type", "%q is not known: use string, boolean or int", pr.Type)
		}
		if pr.Password {
			if appliance.PropertyType(pr.Type) != appliance.TypeString {
				p.add(f+".password", "only string properties can be passwords")
			}
			if pr.Default != "" {
				p.add(f+".default", "a password property must not have a default: it would be visible in the OVF descriptor")
			}
		}
	}
	if len(p.Items) > 0 {
		return warnings, p
	}
	return warnings, nil
}

func (s *Spec) displayPath() string {
	if s.Path == "" {
		return "image spec"
	}
	return s.Path
}

// Size is a byte count written in YAML as "8GiB", "512MiB" or a plain
// number of bytes.
type Size int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}

// ParseSize reads "8GiB", "512 MiB" or "1073741824".
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range sizeUnits {
		if v, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(v), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size: write a whole number with KiB, MiB, GiB or TiB (e.g. 8GiB)", s)
	}
	return Size(n * mult), nil
}

func (z Size) String() string {
	for _, u := range sizeUnits {
		if int64(z) >= u.mult && int64(z)%u.mult == 0 {
			if u.suffix == "B" {
				return strconv.FormatInt(int64(z), 10)
			}
			return strconv.FormatInt(int64(z)/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(z), 10)
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (z *Size) UnmarshalYAML(n *yaml.Node) error {
	// A *yaml.TypeError lets the decoder carry on and report every problem.
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: a size must be text such as 8GiB", n.Line)}}
	}
	v, err := ParseSize(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	*z = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (z Size) MarshalYAML() (any, error) { return z.String(), nil }
