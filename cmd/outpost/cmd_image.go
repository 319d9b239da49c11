package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/artifact"
	"github.com/outpost-appliance/outpost/imagebuild"
	"github.com/outpost-appliance/outpost/images"
	"github.com/outpost-appliance/outpost/ova"
	"github.com/outpost-appliance/outpost/release"
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
SOURCE_DATE_EPOCH the newest modification time in the root filesystem is used,
for the disk and for the OVA's members alike. On a terminal, progress lines
(including the conversion to VMDK and qcow2) go to standard error.

With --release-key, NAME-VERSION.bundle is written too: the root partition
(root A, its non-zero extents zstd-compressed) with the kernel and initrd that
boot it, and a manifest (name, version, architecture, sizes, SHA-256) signed by
the key; connectors install it on an upgrade. The key's public half goes into
the image (/etc/outpost/release-keys/release.pub) so that the appliance trusts
later bundles signed with it.`,
		Examples: `outpost image build -f images/connector/image.yaml --rootfs rootfs/ -o out/
outpost releases keygen -o release.key && outpost image build --rootfs rootfs/ --release-key release.key -o out/
SOURCE_DATE_EPOCH=1700000000 outpost image build --rootfs rootfs.tar --mac 00:50:56:00:12:34`,
		New: func() command { return &imageBuildCmd{} },
	}
	imagePackEntry = entry{
		Path:    "image pack",
		Summary: "Wrap an existing raw disk image in the appliance's output formats",
		Long: `Writes the requested formats from a raw disk built earlier (or by other tools), with the hardware, MAC and properties of the image spec.
The disk must be a raw GPT disk (protective MBR and a GPT header): qcow2,
VMDK, VHD and VHDX files are recognised and refused with the qemu-img command
that converts them. Without SOURCE_DATE_EPOCH the disk's modification time
dates the OVA's members.`,
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
	relKey   string
}

func (f *imageFlags) register(fs *pflag.FlagSet) {
	fs.StringVarP(&f.specPath, "file", "f", "", "image spec (YAML); default: the embedded connector spec ("+images.ConnectorPath+")")
	fs.StringSliceVar(&f.formats, "format", []string{"ova", "qcow2"}, "output formats, comma-separated: "+strings.Join(formatNames(), ", "))
	fs.StringVarP(&f.outDir, "output", "o", ".", "output directory")
	fs.StringVar(&f.mac, "mac", "", "static MAC of the NIC, in VMware's manual range "+appliance.MACRange)
	fs.BoolVar(&f.jsonOut, "json", false, "print the result as JSON")
	fs.StringVar(&f.signKey, "sign-key", "", "PEM RSA private key that signs the OVA's manifest (writes the .cert member); with --sign-cert")
	fs.StringVar(&f.signCert, "sign-cert", "", "PEM certificate of --sign-key, stored in the .cert member")
	fs.StringVar(&f.relKey, "release-key", "", "Ed25519 release key (PEM PKCS#8, from 'outpost releases keygen'): also write NAME-VERSION.bundle, root A as a signed update bundle")
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

// request reads the spec and checks the flags, before anything is written.
func (f *imageFlags) request(s streams) (imagebuild.Request, error) {
	spec, warnings, err := imagebuild.LoadSpec(f.specPath)
	if err != nil {
		return imagebuild.Request{}, err
	}
	for _, w := range warnings {
		fmt.Fprintf(s.Err, "warning: %s\n", w)
	}
	var m appliance.MAC
	if f.mac != "" {
		if m, err = appliance.ParseMAC(f.mac); err != nil {
			return imagebuild.Request{}, usagef("--mac: %v", err)
		}
	}
	var formats []artifact.Format
	seen := map[string]bool{}
	for _, name := range f.formats {
		name = strings.TrimSpace(name)
		if name == "" {
			return imagebuild.Request{}, usagef("--format: empty format name; give one or more of %s, comma-separated", strings.Join(formatNames(), ", "))
		}
		if seen[name] {
			continue // --format ova,ova writes one OVA
		}
		df, found := artifact.Lookup(name)
		if !found {
			return imagebuild.Request{}, usagef("--format: unknown format %q; available: %s", name, strings.Join(formatNames(), ", "))
		}
		formats = append(formats, df)
		seen[name] = true
	}
	if len(formats) == 0 {
		return imagebuild.Request{}, usagef("--format: no format given; give one or more of %s, comma-separated", strings.Join(formatNames(), ", "))
	}
	if (f.signKey != "" || f.signCert != "") && !seen["ova"] {
		return imagebuild.Request{}, usagef("--sign-key/--sign-cert sign an OVA's manifest, and --format %s writes no OVA: add ova to --format, or leave the signing flags out", strings.Join(f.formats, ","))
	}
	signer, err := f.signer()
	if err != nil {
		return imagebuild.Request{}, err
	}
	var relKey ed25519.PrivateKey
	if f.relKey != "" {
		pem, err := os.ReadFile(f.relKey)
		if err != nil {
			return imagebuild.Request{}, fmt.Errorf("--release-key: %w", err)
		}
		if relKey, err = release.ParsePrivateKey(pem); err != nil {
			return imagebuild.Request{}, fmt.Errorf("--release-key %s: %w", f.relKey, err)
		}
	}
	return imagebuild.Request{
		Spec:            spec,
		MAC:             m,
		Formats:         formats,
		OutDir:          f.outDir,
		Signer:          signer,
		ReleaseKey:      relKey,
		SourceDateEpoch: os.Getenv("SOURCE_DATE_EPOCH"),
		Log:             s.Err,
	}, nil
}

// imageResult is what build and pack print.
type imageResult struct {
	Name    string   `json:"name"`
	Version string   `json:"version"`
	MAC     string   `json:"mac"`
	Outputs []string `json:"outputs"`
	Skipped []string `json:"skipped,omitempty"`
}

func (f *imageFlags) print(s streams, r imagebuild.Result) error {
	res := imageResult{Name: r.Name, Version: r.Version, MAC: r.MAC.String(), Outputs: r.Outputs, Skipped: r.Skipped}
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
	cache  string
}

func (c *imageBuildCmd) Register(fs *pflag.FlagSet) {
	c.register(fs)
	fs.StringVar(&c.rootfs, "rootfs", "", "root filesystem: a directory or a tar archive; default: the spec's rootfs (rootfs.debian: built from packages with mmdebstrap)")
	fs.StringVar(&c.cache, "cache", "", "cache of root filesystems built from packages (default $XDG_CACHE_HOME/outpost/rootfs, or ~/.cache/outpost/rootfs)")
}

func (c *imageBuildCmd) Run(ctx context.Context, s streams, args []string) error {
	if len(args) > 0 {
		return usagef("image build: unexpected argument %q; the spec is given with -f", args[0])
	}
	req, err := c.request(s)
	if err != nil {
		return err
	}
	if c.rootfs == "" && req.Spec.RootfsPath() == "" && req.Spec.Rootfs.Debian == nil {
		return usagef("image build: %v", imagebuild.ErrNoRootfs)
	}
	if isTerminal(s.Err) {
		req.Progress = s.Err
	}
	req.CacheDir = c.cache
	res, err := imagebuild.Build(ctx, req, c.rootfs)
	if err != nil {
		return err
	}
	return c.print(s, res)
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
	req, err := c.request(s)
	if err != nil {
		return err
	}
	if c.name != "" || c.version != "" {
		// A new name also gives a new derived MAC (imagebuild derives it
		// from the spec's name when neither --mac nor nic.mac is given).
		if c.name != "" {
			req.Spec.Name = c.name
		}
		if c.version != "" {
			req.Spec.Version = c.version
		}
		if _, err := req.Spec.Validate(); err != nil {
			return usagef("--name/--version: %v", err)
		}
	}
	if isTerminal(s.Err) {
		req.Progress = s.Err
	}
	res, err := imagebuild.Pack(ctx, req, c.disk)
	if err != nil {
		return err
	}
	return c.print(s, res)
}

// isTerminal reports whether a stream (reader or writer) is a terminal;
// /dev/null, also a character device, is not.
func isTerminal(stream any) bool {
	f, ok := stream.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
