package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/outpost-appliance/outpost/artifact"
	"github.com/outpost-appliance/outpost/builder"
	"github.com/outpost-appliance/outpost/images"
	"github.com/outpost-appliance/outpost/mac"
	"github.com/outpost-appliance/outpost/ova"
)

func formatNames() []string {
	var names []string
	for _, f := range artifact.Formats() {
		names = append(names, f.Name)
	}
	return names
}

var (
	imageBuildEntry = entry{
		Path:    "image build",
		Summary: "Build appliance disk images from an image spec and a root filesystem",
		Long: `Builds a bootable GPT disk (EFI system partition with systemd-boot, ext4
root) from the image spec and the root filesystem, without mounting or root
privileges, then writes each requested format to OUTDIR as NAME-VERSION.EXT.
Outputs appear only when every format succeeded. The NIC's static MAC is
--mac, else the spec's nic.mac, else derived from the appliance name.
Identical inputs and SOURCE_DATE_EPOCH give identical bytes; without
SOURCE_DATE_EPOCH the newest modification time in the root filesystem is used.`,
		Examples: `outpost image build -f images/connector/image.yaml --rootfs rootfs/ -o out/
SOURCE_DATE_EPOCH=1700000000 outpost image build --rootfs rootfs.tar --mac 00:50:56:00:12:34`,
		New: func() command { return &imageBuildCmd{} },
	}
	imagePackEntry = entry{
		Path:     "image pack",
		Summary:  "Wrap an existing raw disk image in the appliance's output formats",
		Long:     `Writes the requested formats from a raw disk built earlier (or by other tools), with the hardware, MAC and properties of the image spec.`,
		Examples: `outpost image pack --disk out/outpost-connector-0.1.0.raw --format raw -o dist/`,
		New:      func() command { return &imagePackCmd{} },
	}
)

// imageFlags are shared by build and pack.
type imageFlags struct {
	specPath string
	formats  []string
	outDir   string
	mac      string
	jsonOut  bool
	signKey  string
	signCert string
}

func (f *imageFlags) register(fs *pflag.FlagSet) {
	fs.StringVarP(&f.specPath, "file", "f", "", "image spec (YAML); default: the embedded connector spec ("+images.ConnectorPath+")")
	fs.StringSliceVar(&f.formats, "format", []string{"ova", "qcow2"}, "output formats, comma-separated: "+strings.Join(formatNames(), ", "))
	fs.StringVarP(&f.outDir, "output", "o", ".", "output directory")
	fs.StringVar(&f.mac, "mac", "", "static MAC of the NIC, in VMware's manual range "+mac.Range)
	fs.BoolVar(&f.jsonOut, "json", false, "print the result as JSON")
	fs.StringVar(&f.signKey, "sign-key", "", "PEM RSA private key that signs the OVA's manifest (writes the .cert member); with --sign-cert")
	fs.StringVar(&f.signCert, "sign-cert", "", "PEM certificate of --sign-key, stored in the .cert member")
}

// signer loads the OVA signing key and certificate, when given.
func (f *imageFlags) signer() (*ova.Signer, error) {
	if f.signKey == "" && f.signCert == "" {
		return nil, nil
	}
	if f.signKey == "" || f.signCert == "" {
		return nil, usagef("--sign-key and --sign-cert go together: give both, or neither for an unsigned OVA")
	}
	key, err := os.ReadFile(f.signKey)
	if err != nil {
		return nil, fmt.Errorf("--sign-key: %w", err)
	}
	cert, err := os.ReadFile(f.signCert)
	if err != nil {
		return nil, fmt.Errorf("--sign-cert: %w", err)
	}
	sg, err := ova.NewSigner(key, cert)
	if err != nil {
		return nil, fmt.Errorf("--sign-key/--sign-cert: %w", err)
	}
	return sg, nil
}

// load reads the spec and checks the flags, before anything is written.
func (f *imageFlags) load(s streams) (*builder.Spec, mac.MAC, []artifact.Format, time.Time, error) {
	var (
		spec     *builder.Spec
		warnings []string
		err      error
	)
	if f.specPath == "" {
		spec, warnings, err = builder.ParseSpec(images.ConnectorPath, images.Connector)
	} else {
		spec, warnings, err = builder.LoadSpec(f.specPath)
	}
	if err != nil {
		return nil, mac.MAC{}, nil, time.Time{}, err
	}
	for _, w := range warnings {
		fmt.Fprintf(s.Err, "warning: %s\n", w)
	}
	m, err := spec.MAC()
	if f.mac != "" {
		m, err = mac.Parse(f.mac)
		if err != nil {
			return nil, mac.MAC{}, nil, time.Time{}, usagef("--mac: %v", err)
		}
	}
	if err != nil {
		return nil, mac.MAC{}, nil, time.Time{}, err
	}
	var formats []artifact.Format
	for _, name := range f.formats {
		found := false
		for _, df := range artifact.Formats() {
			if df.Name == strings.TrimSpace(name) {
				formats, found = append(formats, df), true
			}
		}
		if !found {
			return nil, mac.MAC{}, nil, time.Time{}, usagef("--format: unknown format %q; available: %s", name, strings.Join(formatNames(), ", "))
		}
	}
	epoch, err := sourceDateEpoch()
	if err != nil {
		return nil, mac.MAC{}, nil, time.Time{}, err
	}
	if err := checkOutDir(f.outDir); err != nil {
		return nil, mac.MAC{}, nil, time.Time{}, err
	}
	return spec, m, formats, epoch, nil
}

func sourceDateEpoch() (time.Time, error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return time.Time{}, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a number of seconds since 1970; unset it or give e.g. $(git log -1 --format=%%ct)", v)
	}
	return time.Unix(n, 0).UTC(), nil
}

func checkOutDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	probe, err := os.CreateTemp(dir, ".outpost-probe-*")
	if err != nil {
		return fmt.Errorf("output directory %s is not writable: %w", dir, err)
	}
	probe.Close()
	return os.Remove(probe.Name())
}

// imageResult is what build and pack print.
type imageResult struct {
	Name    string   `json:"name"`
	Version string   `json:"version"`
	MAC     string   `json:"mac"`
	Outputs []string `json:"outputs"`
	Skipped []string `json:"skipped,omitempty"`
}

func writeOutputs(ctx context.Context, s streams, f *imageFlags, job *artifact.Job, formats []artifact.Format, skipped []string) error {
	defer job.Close()
	base := fmt.Sprintf("%s-%s", job.Spec.Name, job.Spec.Version)
	type pending struct{ tmp, final string }
	var done []pending
	cleanup := func() {
		for _, p := range done {
			os.Remove(p.tmp)
		}
	}
	for _, df := range formats {
		final := filepath.Join(f.outDir, base+df.Ext)
		tmp := filepath.Join(f.outDir, "."+base+df.Ext+".partial")
		os.Remove(tmp)
		done = append(done, pending{tmp, final})
		if err := df.Write(ctx, job, tmp); err != nil {
			cleanup()
			return fmt.Errorf("writing %s: %w", df.Name, err)
		}
	}
	res := imageResult{Name: job.Spec.Name, Version: job.Spec.Version, MAC: job.MAC.String(), Skipped: skipped}
	for _, p := range done {
		if err := os.Rename(p.tmp, p.final); err != nil {
			cleanup()
			return fmt.Errorf("writing %s: %w", p.final, err)
		}
		res.Outputs = append(res.Outputs, p.final)
	}
	if f.jsonOut {
		enc := json.NewEncoder(s.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	for _, o := range res.Outputs {
		fmt.Fprintln(s.Out, o)
	}
	return nil
}

type imageBuildCmd struct {
	imageFlags
	rootfs string
}

func (c *imageBuildCmd) Register(fs *pflag.FlagSet) {
	c.register(fs)
	fs.StringVar(&c.rootfs, "rootfs", "", "root filesystem: a directory or a tar archive; default: the spec's rootfs")
}

func (c *imageBuildCmd) Run(ctx context.Context, s streams, args []string) error {
	if len(args) > 0 {
		return usagef("image build: unexpected argument %q; the spec is given with -f", args[0])
	}
	spec, m, formats, epoch, err := c.load(s)
	if err != nil {
		return err
	}
	signer, err := c.signer()
	if err != nil {
		return err
	}
	rootfs := c.rootfs
	if rootfs == "" {
		rootfs = spec.RootfsPath()
	}
	if rootfs == "" {
		return usagef("image build: no root filesystem: give --rootfs DIR|TAR or set rootfs.dir or rootfs.tar in the spec")
	}
	raw, err := os.CreateTemp(c.outDir, "."+spec.Name+"-*.raw.partial")
	if err != nil {
		return fmt.Errorf("output directory %s: %w", c.outDir, err)
	}
	raw.Close()
	if err := os.Chmod(raw.Name(), 0o644); err != nil {
		return err
	}
	defer os.Remove(raw.Name())
	opts := builder.Options{Epoch: epoch}
	if isTerminal(s.Err) {
		opts.Progress = s.Err
	}
	res, err := builder.Build(ctx, spec, rootfs, raw.Name(), opts)
	if err != nil {
		return err
	}
	for _, sk := range res.Skipped {
		fmt.Fprintf(s.Err, "note: %s\n", sk)
	}
	job := &artifact.Job{Spec: spec, MAC: m, RawPath: raw.Name(), Epoch: epoch, Signer: signer, Scratch: true}
	return writeOutputs(ctx, s, &c.imageFlags, job, formats, res.Skipped)
}

type imagePackCmd struct {
	imageFlags
	disk    string
	name    string
	version string
}

func (c *imagePackCmd) Register(fs *pflag.FlagSet) {
	fs.StringVar(&c.disk, "disk", "", "raw disk image to pack (required)")
	fs.StringVar(&c.name, "name", "", "appliance name; default: the spec's name")
	fs.StringVar(&c.version, "version", "", "appliance version; default: the spec's version")
	c.register(fs)
}

func (c *imagePackCmd) Run(ctx context.Context, s streams, args []string) error {
	if len(args) > 0 {
		return usagef("image pack: unexpected argument %q", args[0])
	}
	if c.disk == "" {
		return usagef("image pack: --disk RAW is required")
	}
	spec, m, formats, epoch, err := c.load(s)
	if err != nil {
		return err
	}
	signer, err := c.signer()
	if err != nil {
		return err
	}
	if c.name != "" || c.version != "" {
		if c.name != "" {
			spec.Name = c.name
			if c.mac == "" && spec.NIC.MAC == "" {
				m = mac.Derive(c.name)
			}
		}
		if c.version != "" {
			spec.Version = c.version
		}
		if _, err := spec.Validate(); err != nil {
			return usagef("--name/--version: %v", err)
		}
	}
	fi, err := os.Stat(c.disk)
	if err != nil {
		return fmt.Errorf("--disk: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Size() == 0 || fi.Size()%512 != 0 {
		return fmt.Errorf("--disk %s: not a raw disk image (a regular file whose size is a multiple of 512 bytes)", c.disk)
	}
	job := &artifact.Job{Spec: spec, MAC: m, RawPath: c.disk, Epoch: epoch, Signer: signer}
	return writeOutputs(ctx, s, &c.imageFlags, job, formats, nil)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
