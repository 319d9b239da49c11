package config

import (
	"bufio"
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/firstboot/sysroot"
	"github.com/outpost-appliance/outpost/firstboot/vmtools"
)

// Well-known locations inside the appliance's root.
const (
	DefaultsFile = "/etc/outpost/defaults"
	FwCfgFile    = "/sys/firmware/qemu_fw_cfg/by_name/opt/outpost/config/raw"
	KeyFile      = "/opt/outpost/var/provision_key"
	// SeedFile is the file a seed ISO (volume label OUTPOST) carries.
	SeedFile = "outpost.cfg" // 8.3, so it survives an ISO without Rock Ridge
	// OVFEnvFile is what the OVF ISO transport's CD-ROM carries.
	OVFEnvFile = "ovf-env.xml"
)

// DefaultCDROMs are the devices probed for the OVF ISO transport and a seed ISO.
var DefaultCDROMs = []string{"/dev/sr0", "/dev/sr1"}

// Loader reads every configuration source under a root.
type Loader struct {
	Root sysroot.Root
	// CDROMs are device paths inside the root to probe for ISO images.
	CDROMs []string
	// RPCTool runs `vmware-rpctool CMD` and returns its output; nil looks
	// vmware-rpctool up on PATH (only when the root is the host's "/").
	RPCTool func(ctx context.Context, cmd string) ([]byte, error)
	// Extra is the --config file (a host path), highest precedence.
	Extra string
}

// Load reads all sources, lowest precedence first, and validates the result.
// The returned sets say what each source contributed, for status output.
func (l Loader) Load(ctx context.Context) (*Config, []Set, error) {
	sets, err := l.Sets(ctx)
	if err != nil {
		return nil, sets, err
	}
	c, err := Validate(Merge(sets...))
	if c != nil {
		for _, s := range sets {
			c.Warnings = append(c.Warnings, s.Warnings...)
		}
	}
	return c, sets, err
}

// Sets reads every present source. A source that is present but unreadable
// or malformed is an error naming it; an absent source is skipped.
func (l Loader) Sets(ctx context.Context) ([]Set, error) {
	var sets []Set
	var errs []error
	add := func(s *Set, err error) {
		if err != nil {
			errs = append(errs, err)
		}
		if s != nil && (len(s.Props) > 0 || len(s.Warnings) > 0) {
			sets = append(sets, *s)
		}
	}
	add(l.propsFile(DefaultsFile))

	cds := l.CDROMs
	if cds == nil {
		cds = DefaultCDROMs
	}
	var seeds []*Set
	for _, dev := range cds {
		ovf, seed, err := l.readISO(dev)
		add(ovf, err)
		if seed != nil {
			seeds = append(seeds, seed)
		}
	}
	add(l.guestinfo(ctx))
	add(l.propsFile(FwCfgFile))
	for _, s := range seeds {
		add(s, nil)
	}
	add(l.keyFile())
	if l.Extra != "" {
		b, err := os.ReadFile(l.Extra)
		if err != nil {
			add(nil, fmt.Errorf("--config: %w", err))
		} else if bytes.HasPrefix(bytes.TrimSpace(b), []byte("<")) {
			add(ParseOVFEnv(l.Extra, b))
		} else {
			add(ParseProperties(l.Extra, b))
		}
	}
	return sets, errors.Join(errs...)
}

func (l Loader) propsFile(name string) (*Set, error) {
	b, err := l.Root.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return ParseProperties(name, b)
}

// keyFile reads the key an admin wrote by hand: the whole file is the key.
func (l Loader) keyFile() (*Set, error) {
	b, err := l.Root.ReadFile(KeyFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", KeyFile, err)
	}
	return &Set{Source: KeyFile, Props: map[string]string{appliance.PropProvisionKey: string(b)}}, nil
}

// guestinfo reads guestinfo.ovfEnv through vmware-rpctool when present.
func (l Loader) guestinfo(ctx context.Context) (*Set, error) {
	run := l.RPCTool
	if run == nil {
		if !l.Root.IsHost() {
			return nil, nil
		}
		if run = vmtools.Lookup(); run == nil {
			return nil, nil
		}
	}
	b, err := run(ctx, "info-get "+appliance.GuestinfoOVFEnv)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		// Not on VMware, or no vApp options: not an error.
		return nil, nil
	}
	return ParseOVFEnv(appliance.GuestinfoOVFEnv, b)
}

// readISO opens dev as ISO 9660 without mounting it and returns the OVF
// environment and/or seed it carries.
func (l Loader) readISO(dev string) (ovf, seed *Set, err error) {
	p, err := l.Root.Path(dev)
	if err != nil {
		return nil, nil, err
	}
	fi, err := os.Stat(p)
	if err != nil || fi.IsDir() {
		return nil, nil, nil // no such drive
	}
	st, err := file.OpenFromPath(p, true)
	if err != nil {
		return nil, nil, nil // empty drive: ENOMEDIUM
	}
	defer st.Close()
	size := fi.Size()
	if size == 0 {
		if f, err := os.Open(p); err == nil {
			size, _ = f.Seek(0, 2)
			f.Close()
		}
	}
	fsys, err := iso9660.Read(st, size, 0, 2048)
	if err != nil {
		return nil, nil, nil // not an ISO 9660 medium
	}
	// Without Rock Ridge the names are ISO 9660 level 1 (OVF_ENV.XML;1):
	// match them the way a mount with map=normal would.
	ents, err := fsys.ReadDir(".")
	if err != nil {
		return nil, nil, fmt.Errorf("%s: read the CD-ROM's directory: %w", dev, err)
	}
	read := func(name string) ([]byte, bool) {
		for _, e := range ents {
			if isoName(e.Name()) != isoName(name) {
				continue
			}
			f, err := fsys.OpenFile(e.Name(), os.O_RDONLY)
			if err != nil {
				return nil, false
			}
			defer f.Close()
			var buf bytes.Buffer
			if _, err := buf.ReadFrom(io.LimitReader(f, 1<<20)); err != nil {
				return nil, false
			}
			return buf.Bytes(), true
		}
		return nil, false
	}
	var errs []error
	if b, ok := read(OVFEnvFile); ok {
		ovf, err = ParseOVFEnv(path.Join(dev, OVFEnvFile), b)
		errs = append(errs, err)
	}
	if b, ok := read(SeedFile); ok {
		seed, err = ParseProperties(path.Join(dev, SeedFile), b)
		errs = append(errs, err)
	}
	return ovf, seed, errors.Join(errs...)
}

func isoName(n string) string {
	n, _, _ = strings.Cut(n, ";")
	return strings.ReplaceAll(strings.ToLower(n), "-", "_")
}

// ParseProperties reads `property=value` lines; blank lines and lines
// starting with # are ignored. The value is everything after the first '='.
func ParseProperties(source string, b []byte) (*Set, error) {
	s := &Set{Source: source, Props: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(b))
	n := 0
	var errs []error
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			errs = append(errs, fmt.Errorf("%s:%d: want property=value", source, n))
			continue
		}
		s.Props[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", source, err))
	}
	return s, errors.Join(errs...)
}

// ovfEnv is the part of the OVF environment document (DSP0243) first boot
// reads; field names follow govmomi's ovf.Env so documents it writes parse.
type ovfEnv struct {
	XMLName  xml.Name `xml:"http://schemas.dmtf.org/ovf/environment/1 Environment"`
	Property *struct {
		Properties []struct {
			Key   string `xml:"key,attr"`
			Value string `xml:"value,attr"`
		} `xml:"Property"`
	} `xml:"PropertySection"`
}

// ParseOVFEnv reads the vApp properties of an OVF environment document.
func ParseOVFEnv(source string, b []byte) (*Set, error) {
	var env ovfEnv
	if err := xml.Unmarshal(b, &env); err != nil {
		return nil, fmt.Errorf("%s: not an OVF environment document: %w", source, err)
	}
	s := &Set{Source: source, Props: map[string]string{}}
	if env.Property != nil {
		for _, p := range env.Property.Properties {
			if _, known := appliance.LookupProperty(p.Key); known {
				s.Props[p.Key] = p.Value
			} else if strings.HasPrefix(p.Key, "outpost.") {
				// vCenter passes every vApp property on, and an OVF from
				// a newer release may declare more: a warning, not a stop.
				s.Warnings = append(s.Warnings, fmt.Sprintf("%s: property %s is not one this appliance knows; it was ignored", source, p.Key))
			}
		}
	}
	return s, nil
}
