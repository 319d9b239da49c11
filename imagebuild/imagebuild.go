// Package imagebuild is the appliance image pipeline behind `outpost image
// build` and `outpost image pack`: it settles the NIC's MAC and the build
// time, checks the output directory before anything is written, builds the
// raw disk to a temporary file (Build) or takes a raw disk given (Pack),
// writes every requested format under a temporary name, and publishes them
// all, renaming, only when every format succeeded.
//
// It does not parse flags or print results (cmd/outpost does), build disks
// (package builder) or define the formats (package artifact). Messages for
// a person go to the writers in Request; nothing else is printed.
package imagebuild

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/artifact"
	"github.com/outpost-appliance/outpost/builder"
	"github.com/outpost-appliance/outpost/images"
	"github.com/outpost-appliance/outpost/ova"
)

// Request is what Build and Pack share.
type Request struct {
	// Spec is the validated image spec (LoadSpec); Name and Version name
	// the outputs NAME-VERSION.EXT.
	Spec *builder.Spec
	// MAC is the NIC's static MAC given by the user; the zero MAC means
	// none, and then the spec's nic.mac is used, else one derived from
	// Spec.Name.
	MAC appliance.MAC
	// Formats are written in this order; Result.Outputs keeps it.
	Formats []artifact.Format
	// OutDir receives the outputs; it is created if missing.
	OutDir string
	// Signer signs the OVA's manifest; nil leaves the OVA unsigned.
	Signer *ova.Signer
	// ReleaseKey, when set, also writes NAME-VERSION.bundle: root A of
	// the disk with the kernel and initrd on its ESP as a signed update
	// bundle (package release), published with the other outputs, after
	// them. Build also puts the key's public half in the root filesystem
	// (/etc/outpost/release-keys/release.pub) so that the appliance
	// installs later bundles signed with it; Pack takes the disk as it is.
	ReleaseKey ed25519.PrivateKey
	// SourceDateEpoch is $SOURCE_DATE_EPOCH, seconds since 1970 as text:
	// the time stamped in the outputs. "" means unset: Build uses the
	// newest modification time in the root filesystem, Pack the raw disk's
	// modification time.
	SourceDateEpoch string
	// Log receives notes for a person, a line each ("note: …"); nil
	// discards them.
	Log io.Writer
	// Progress receives progress lines (for a terminal): the builder's,
	// and the percentage of the disk converted to VMDK and qcow2; nil
	// shows none.
	Progress io.Writer
	// CacheDir caches root filesystems built from Debian packages;
	// "" means DefaultCacheDir().
	CacheDir string
	// ModuleDir is the outpost checkout that files[].go binaries are built
	// in; "" means found above the spec or the working directory.
	ModuleDir string
}

// Result is what a successful Build or Pack made.
type Result struct {
	Name    string
	Version string
	MAC     appliance.MAC
	// Outputs are the published files, in the order of Request.Formats.
	Outputs []string
	// Skipped lists what the builder left out of the root filesystem.
	Skipped []string
}

// LoadSpec reads the image spec at path, or the embedded connector spec
// (images.ConnectorPath) when path is "". Warnings are for a person.
func LoadSpec(path string) (*builder.Spec, []string, error) {
	if path == "" {
		s, warnings, err := builder.ParseSpec(images.ConnectorPath, images.Connector)
		if err != nil {
			return nil, nil, err
		}
		s.FS = images.ConnectorFS()
		return s, warnings, nil
	}
	return builder.LoadSpec(path)
}

// settled is a request whose MAC and time are decided and whose output
// directory is known to be writable.
type settled struct {
	Request
	mac   appliance.MAC
	epoch time.Time
}

func settle(req Request) (settled, error) {
	s := settled{Request: req, mac: req.MAC}
	if s.mac == (appliance.MAC{}) {
		m, err := req.Spec.MAC()
		if err != nil {
			return s, err
		}
		s.mac = m
	}
	epoch, err := SourceDateEpoch(req.SourceDateEpoch)
	if err != nil {
		return s, err
	}
	s.epoch = epoch
	if err := checkOutDir(req.OutDir); err != nil {
		return s, err
	}
	return s, nil
}

// SourceDateEpoch parses the value of $SOURCE_DATE_EPOCH; "" is the zero
// time (unset).
func SourceDateEpoch(v string) (time.Time, error) {
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

// Build builds the bootable raw disk into a temporary file in OutDir, then
// writes and publishes every format from it; the temporary disk is removed.
// The root filesystem is rootfs (a directory or a tar archive) when given,
// else the one the spec names (rootfs.dir, rootfs.tar, or rootfs.debian:
// built from packages, cached), with the spec's files laid over it.
func Build(ctx context.Context, req Request, rootfs string) (Result, error) {
	s, err := settle(req)
	if err != nil {
		return Result{}, err
	}
	t, err := s.rootTree(ctx, rootfs)
	if err != nil {
		return Result{}, err
	}
	defer t.cleanup()
	keyFiles, err := releaseKeyFiles(s.ReleaseKey)
	if err != nil {
		return Result{}, err
	}
	t.files = append(t.files, keyFiles...)
	raw, err := os.CreateTemp(s.OutDir, "."+s.Spec.Name+"-*.raw.partial")
	if err != nil {
		return Result{}, fmt.Errorf("output directory %s: %w", s.OutDir, err)
	}
	raw.Close()
	defer os.Remove(raw.Name())
	if err := os.Chmod(raw.Name(), 0o644); err != nil {
		return Result{}, err
	}
	res, err := builder.Build(ctx, s.Spec, t.source, raw.Name(), builder.Options{Epoch: s.epoch, Progress: s.Progress, Files: t.files, Remove: t.remove})
	if err != nil {
		return Result{}, err
	}
	for _, sk := range res.Skipped {
		s.logf("note: %s\n", sk)
	}
	// Without SOURCE_DATE_EPOCH the builder settled on the newest time in
	// the tree: the OVA's members get the same.
	job := &artifact.Job{Spec: s.Spec, MAC: s.mac, RawPath: raw.Name(), Epoch: res.Epoch, Signer: s.Signer, Scratch: true, Progress: s.Progress}
	return publish(ctx, s, job, res.Skipped)
}

// Pack writes and publishes every format from rawDisk, a raw disk image
// built earlier (or by other tools); rawDisk is only read.
//
// rawDisk must pass CheckRawDisk: another format (qcow2, VMDK, VHD) or data
// without a GPT is refused before anything is written.
func Pack(ctx context.Context, req Request, rawDisk string) (Result, error) {
	if err := CheckRawDisk(rawDisk); err != nil {
		return Result{}, err
	}
	s, err := settle(req)
	if err != nil {
		return Result{}, err
	}
	if s.epoch.IsZero() {
		fi, err := os.Stat(rawDisk)
		if err != nil {
			return Result{}, fmt.Errorf("disk: %w", err)
		}
		s.epoch = fi.ModTime().UTC().Truncate(time.Second)
	}
	job := &artifact.Job{Spec: s.Spec, MAC: s.mac, RawPath: rawDisk, Epoch: s.epoch, Signer: s.Signer, Progress: s.Progress}
	return publish(ctx, s, job, nil)
}

func (s settled) logf(format string, a ...any) {
	if s.Log != nil {
		fmt.Fprintf(s.Log, format, a...)
	}
}

// publish writes every format to a temporary name in OutDir and renames
// them to NAME-VERSION.EXT only when all succeeded; on failure the
// temporary files are removed.
func publish(ctx context.Context, s settled, job *artifact.Job, skipped []string) (Result, error) {
	defer job.Close()
	base := fmt.Sprintf("%s-%s", job.Spec.Name, job.Spec.Version)
	type pending struct{ tmp, final string }
	var done []pending
	cleanup := func() {
		for _, p := range done {
			os.Remove(p.tmp)
		}
	}
	seen := map[string]bool{}
	for _, df := range s.Formats {
		if seen[df.Name] {
			continue // written once; a second rename would fail
		}
		seen[df.Name] = true
		final := filepath.Join(s.OutDir, base+df.Ext)
		tmp := filepath.Join(s.OutDir, "."+base+df.Ext+".partial")
		os.Remove(tmp)
		done = append(done, pending{tmp, final})
		if err := df.Write(ctx, job, tmp); err != nil {
			cleanup()
			return Result{}, fmt.Errorf("writing %s: %w", df.Name, err)
		}
	}
	if s.ReleaseKey != nil {
		final := filepath.Join(s.OutDir, base+BundleExt)
		tmp := filepath.Join(s.OutDir, "."+base+BundleExt+".partial")
		os.Remove(tmp)
		done = append(done, pending{tmp, final})
		if err := writeBundle(job, s.ReleaseKey, tmp, s.OutDir); err != nil {
			cleanup()
			return Result{}, fmt.Errorf("writing the release bundle: %w", err)
		}
	}
	res := Result{Name: job.Spec.Name, Version: job.Spec.Version, MAC: job.MAC, Skipped: skipped}
	for _, p := range done {
		if err := os.Rename(p.tmp, p.final); err != nil {
			cleanup()
			return Result{}, fmt.Errorf("writing %s: %w", p.final, err)
		}
		res.Outputs = append(res.Outputs, p.final)
	}
	return res, nil
}

// DefaultImageDir is where the connector's qcow2 is built for the QEMU lab
// and kept between labs: images/ beside DefaultCacheDir.
func DefaultImageDir() string {
	return filepath.Join(filepath.Dir(DefaultCacheDir()), "images")
}

// ConnectorQCOW2 builds the connector appliance from the embedded spec as
// qcow2 only (what QEMU runs) into req.OutDir and returns its path. req's
// Spec and Formats are set here; the rest is as for Build.
func ConnectorQCOW2(ctx context.Context, req Request) (string, error) {
	spec, _, err := LoadSpec("")
	if err != nil {
		return "", err
	}
	qcow2, _ := artifact.Lookup("qcow2")
	req.Spec, req.Formats = spec, []artifact.Format{qcow2}
	res, err := Build(ctx, req, "")
	if err != nil {
		return "", err
	}
	return res.Outputs[0], nil
}
