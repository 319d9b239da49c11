// Package artifact writes an appliance's distribution files — OVA, qcow2,
// standalone VMDK and sparse raw — from the raw GPT disk the builder made.
//
// It joins the builder's image spec to the disk writers and the OVA
// packager: it does not build disks (package builder), define the disk
// formats (packages disk/...) or the OVA (package ova), and it does not
// decide where outputs are published (package imagebuild writes each format
// to a temporary name and renames them when all succeeded).
package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/builder"
	"github.com/outpost-appliance/outpost/disk"
	"github.com/outpost-appliance/outpost/disk/qcow2"
	"github.com/outpost-appliance/outpost/disk/raw"
	"github.com/outpost-appliance/outpost/disk/vmdk"
	"github.com/outpost-appliance/outpost/ova"
)

// Job is what every format is made from.
type Job struct {
	Spec    *builder.Spec
	MAC     appliance.MAC
	RawPath string    // the bootable raw disk (sparse); read only
	Epoch   time.Time // SOURCE_DATE_EPOCH: tar member times
	Signer  *ova.Signer
	// Scratch says RawPath is a temporary file of this run (image build), so
	// the raw output may hard-link it; otherwise it is the user's and is copied.
	Scratch bool
	// Progress receives "writing VMDK: 40%" lines while a disk is
	// converted (the slow part); nil shows none.
	Progress io.Writer

	// vmdk is the streamOptimized VMDK of this run: compressing is the
	// slow part, so the standalone VMDK and the OVA share one, whichever
	// is written first.
	vmdk *vmdkFile
	// scratch lists the files the job keeps between formats (a VMDK an OVA
	// compressed before the standalone VMDK was asked for); Close removes them.
	scratch []string
	// compressions counts the disk's compressions to VMDK, for tests.
	compressions int
}

type vmdkFile struct {
	path   string
	sha256 string
	info   disk.Info
}

// Format is one output. Write makes dst; callers give a temporary name and
// rename it when every format succeeded, and Close the Job after the last.
type Format struct {
	Name  string
	Ext   string
	Write func(ctx context.Context, job *Job, dst string) error
}

// Formats lists the output formats by name.
func Formats() []Format {
	return []Format{
		{Name: "ova", Ext: ".ova", Write: writeOVA},
		{Name: "qcow2", Ext: ".qcow2", Write: writeQCOW2},
		{Name: "vmdk", Ext: ".vmdk", Write: writeVMDK},
		{Name: "raw", Ext: ".raw", Write: writeRaw},
	}
}

// Lookup returns the format called name (ova, qcow2, vmdk, raw).
func Lookup(name string) (Format, bool) {
	for _, f := range Formats() {
		if f.Name == name {
			return f, true
		}
	}
	return Format{}, false
}

// DiskName is the VMDK's member name inside the OVA.
func (j *Job) DiskName() string { return j.Spec.Name + "-disk1.vmdk" }

// Appliance maps the image spec to the OVF description.
func (j *Job) Appliance() ova.Appliance {
	s := j.Spec
	a := ova.Appliance{
		Name:        s.Name,
		Vendor:      "outpost",
		Version:     s.Version,
		Description: s.Description,
		CPUs:        s.Hardware.CPUs,
		MemoryMiB:   s.Hardware.MemoryMiB,
		MAC:         j.MAC.String(),
		Firmware:    appliance.FirmwareUEFI.OVF(), // the builder's disks boot with systemd-boot only

		HardwareVersion: s.Hardware.VirtualHardware,
	}
	if len(s.Properties) > 0 {
		a.Properties = []ova.Property{}
		for _, p := range s.Properties {
			contract, _ := appliance.LookupProperty(p.Key)
			a.Properties = append(a.Properties, ova.Property{
				Key: p.Key, Category: p.Category, Label: p.Label, Description: p.Description,
				Default: p.Default, Password: p.Password, Choices: contract.Choices,
			})
		}
	}
	return a
}

func openRaw(ctx context.Context, job *Job) (*disk.Raw, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	img, err := disk.OpenRaw(job.RawPath)
	if err != nil {
		return nil, fmt.Errorf("raw disk %s: %w", job.RawPath, err)
	}
	return img, nil
}

// vmdkLevel is the deflate level of VMDKs. At level 6 klauspost/compress
// makes a VMDK about 3% larger than qemu-img's zlib; with the ESP's copy of
// the kernel the OVA ended 4.9% larger than the standard-tool pipeline's
// (BenchmarkRootfsToOVA, 1 GiB tree). Level 7 is 1.8% smaller for about
// 2.5 s more CPU per GiB of tree, well inside the speed target; level 8
// saves only 0.4% more for as much again.
const vmdkLevel = 7

// Close removes the files the job kept between formats. Call it when every
// format is written (or one failed); the outputs stay.
func (j *Job) Close() error {
	var errs []error
	for _, p := range j.scratch {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
		if j.vmdk != nil && j.vmdk.path == p {
			j.vmdk = nil
		}
	}
	j.scratch = nil
	return errors.Join(errs...)
}

// compressVMDK writes the disk as a streamOptimized VMDK to dst and keeps it
// as the run's VMDK.
func compressVMDK(ctx context.Context, job *Job, dst string) error {
	img, err := openRaw(ctx, job)
	if err != nil {
		return err
	}
	defer img.Close()
	job.compressions++
	h := sha256.New()
	hashed := func(w io.Writer, img disk.Image, opt vmdk.Options) (disk.Info, error) {
		return vmdk.Write(io.MultiWriter(w, h), img, opt)
	}
	info, err := disk.WriteFile(dst, job.progress("writing VMDK", img), hashed, vmdk.Options{ExtentName: job.DiskName(), Level: vmdkLevel})
	if err != nil {
		return err
	}
	job.vmdk = &vmdkFile{path: dst, sha256: hex.EncodeToString(h.Sum(nil)), info: info}
	return nil
}

func writeVMDK(ctx context.Context, job *Job, dst string) error {
	if job.vmdk == nil {
		return compressVMDK(ctx, job, dst)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return linkOrCopy(job.vmdk.path, dst)
}

func writeOVA(ctx context.Context, job *Job, dst string) error {
	if job.vmdk == nil {
		tmp := filepath.Join(filepath.Dir(dst), "."+job.DiskName()+".partial")
		job.scratch = append(job.scratch, tmp)
		if err := compressVMDK(ctx, job, tmp); err != nil {
			return err
		}
	}
	v := job.vmdk
	disks := []ova.Disk{{Name: job.DiskName(), Path: v.path, Capacity: v.info.Capacity, PopulatedSize: v.info.Populated, SHA256: v.sha256}}
	return ova.WriteOVAFile(dst, job.Appliance(), disks, ova.PackOptions{ModTime: job.Epoch, Signer: job.Signer})
}

// linkOrCopy makes dst a hard link of src, or a copy where links fail.
func linkOrCopy(src, dst string) (err error) {
	if os.Link(src, dst) == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(dst)
		}
	}()
	if _, err := io.Copy(out, in); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return out.Sync()
}

func writeQCOW2(ctx context.Context, job *Job, dst string) error {
	img, err := openRaw(ctx, job)
	if err != nil {
		return err
	}
	defer img.Close()
	_, err = disk.WriteFile(dst, job.progress("writing qcow2", img), qcow2.Write, qcow2.Options{})
	return err
}

func writeRaw(ctx context.Context, job *Job, dst string) error {
	if job.Scratch {
		if err := os.Link(job.RawPath, dst); err == nil {
			return nil
		}
	}
	img, err := openRaw(ctx, job)
	if err != nil {
		return err
	}
	defer img.Close()
	_, err = disk.WriteFile(dst, img, raw.Write, raw.Options{})
	return err
}

// progress wraps img so that reading its data prints a line at every 5%
// to job.Progress; without a Progress writer it returns img.
func (j *Job) progress(what string, img disk.Image) disk.Image {
	if j.Progress == nil {
		return img
	}
	exts, err := img.Extents()
	if err != nil {
		return img // the writer reports the error
	}
	var total int64
	for _, e := range exts {
		total += e.Len
	}
	if total == 0 {
		return img
	}
	return &progressImage{Image: img, what: what, w: j.Progress, total: total, last: -5}
}

type progressImage struct {
	disk.Image
	what        string
	w           io.Writer
	total, done int64
	last        int64
}

func (p *progressImage) ReadAt(b []byte, off int64) (int, error) {
	n, err := p.Image.ReadAt(b, off)
	p.done += int64(n)
	if pc := min(p.done*100/p.total, 100); pc >= p.last+5 {
		p.last = pc - pc%5
		fmt.Fprintf(p.w, "%s: %d%%\n", p.what, p.last)
	}
	return n, err
}
