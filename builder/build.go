package builder

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/filesystem/fat32"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/google/uuid"
	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/builder/ext4img"
)

// HostBootloader is where Debian's systemd-boot-efi package puts systemd-boot;
// Build uses it when the root filesystem carries none.
const HostBootloader = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"

const (
	sectorSize = 512
	alignment  = 1 << 20   // partitions start on 1 MiB boundaries
	espSize    = 256 << 20 // EFI system partition
	// ESPIndex and RootIndex are the GPT partition numbers of the ESP and
	// root A (package appliance has the whole layout).
	ESPIndex  = appliance.ESPPartition
	RootIndex = appliance.RootAPartition
)

// Options tune Build. The zero value is usable: quiet, epoch 0.
type Options struct {
	// Epoch is SOURCE_DATE_EPOCH: every timestamp written is clamped to it,
	// and the disk's identifiers are derived from it with the name and
	// version. The zero value means the newest modification time in the
	// root filesystem, so identical trees still give identical disks.
	Epoch time.Time
	// Progress receives human-readable progress lines; nil means quiet.
	Progress io.Writer
	// Bootloader is the systemd-boot EFI binary used when the root
	// filesystem has none; empty means HostBootloader.
	Bootloader string
	// KernelArgs are appended to the boot entry's options.
	KernelArgs string
	// Files are added to the root filesystem, or replace what it has at
	// their paths; Remove names paths (path.Match patterns, absolute) left
	// out of it. The builder adds /etc/fstab itself (appliance.Fstab) and
	// the ESP's mount point.
	Files  []File
	Remove []string
}

// Result describes the disk Build wrote.
type Result struct {
	Path          string
	Size          int64  // virtual size in bytes
	DiskGUID      string // GPT disk GUID
	ESPPartUUID   string
	RootPartUUID  string // what root=PARTUUID= names
	RootFSUUID    string
	RootBPartUUID string // the second root, empty until an upgrade writes it
	DataPartUUID  string
	DataFSUUID    string
	ESPVolumeID   uint32
	Kernel        string // path in the root filesystem, e.g. boot/vmlinuz-6.1.0-28-cloud-amd64
	Initrd        string // "" when the root filesystem has none
	Bootloader    string // where systemd-boot came from
	KernelOptions string
	// Epoch is the time the disk was stamped with: Options.Epoch, or the
	// newest modification time in the root filesystem when that was zero.
	Epoch    time.Time
	Files    int
	Dirs     int
	Symlinks int
	// Skipped lists what Build left out or changed. The ext4 writer stores
	// every file type, hard links and owners, so it is empty today;
	// extended attributes are not copied and not listed.
	Skipped []string
}

// ErrTooLarge is returned when the root filesystem does not fit the disk.
var ErrTooLarge = errors.New("root filesystem does not fit the disk")

// ErrNoKernel is returned when the root filesystem has no /boot/vmlinuz-*.
var ErrNoKernel = errors.New("root filesystem has no kernel")

// Build writes a bootable GPT raw disk of spec's size to outRawPath (a sparse
// file: only used space costs bytes): an EFI system partition with
// systemd-boot, the kernel and initrd from the root filesystem's /boot and a
// boot entry that finds the root by PARTUUID, and an ext4 root partition
// holding the tree at rootfs (a directory or a tar archive). Same inputs and
// Epoch give the same bytes. On error outRawPath is removed.
func Build(ctx context.Context, spec *Spec, rootfs string, outRawPath string, opts Options) (res *Result, err error) {
	base, err := openSource(rootfs)
	if err != nil {
		return nil, err
	}
	size := (int64(spec.Hardware.Disk.Size) + alignment - 1) / alignment * alignment
	// The builder's own files: the marker first boot checks for, and the
	// fstab mounting the data partition. They replace any copy the tree has.
	files := []File{
		{Path: appliance.MarkerFile, Mode: 0o644, Data: appliance.Marker(spec.Name, spec.Version)},
		{Path: "/etc/fstab", Mode: 0o644, Data: []byte(appliance.Fstab(appliance.StablePartUUID(spec.Name, "data"), appliance.StablePartUUID(spec.Name, "esp")))},
	}
	// The ESP's mount point, unless the spec makes it itself.
	if !slices.ContainsFunc(opts.Files, func(f File) bool { return path.Clean(f.Path) == appliance.ESPMount }) {
		files = append(files, File{Path: appliance.ESPMount, Mode: fs.ModeDir | 0o755})
	}
	files = append(files, opts.Files...)
	src, err := newOverlay(base, files, opts.Remove, opts.Epoch)
	if err != nil {
		return nil, err
	}
	p := &progress{w: opts.Progress}
	// The root partition's size does not depend on the epoch.
	l := newLayout(spec, size, opts.Epoch)
	img := ext4img.New(l.rootSize)

	p.printf("scanning %s\n", src)
	scan, err := scanSource(ctx, src, img, opts.Epoch)
	if err != nil {
		return nil, err
	}
	if opts.Epoch.IsZero() {
		opts.Epoch = scan.newest
	}
	epoch := clampEpoch(opts.Epoch)
	l = newLayout(spec, size, epoch)
	if scan.kernel == "" {
		return nil, fmt.Errorf("%w: %s has no boot/vmlinuz-*; install a kernel package (e.g. linux-image-cloud-amd64) in it", ErrNoKernel, src)
	}
	if err := img.Layout(ext4img.Options{UUID: l.fsUUID, HashSeed: l.hashSeed, Label: "root", Time: epoch}); err != nil {
		if errors.Is(err, ext4img.ErrTooLarge) {
			return nil, fmt.Errorf("%w: %s: %v (the root partition of a %s disk); raise hardware.disk.size",
				ErrTooLarge, src, err, Size(size))
		}
		return nil, fmt.Errorf("laying out the root filesystem: %w", err)
	}

	f, err := os.OpenFile(outRawPath, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating disk image: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("writing disk image %s: %w", outRawPath, cerr)
		}
		if err != nil {
			os.Remove(outRawPath)
			res = nil
		}
	}()
	if err := f.Truncate(size); err != nil {
		return nil, fmt.Errorf("sizing disk image %s to %s: %w", outRawPath, Size(size), err)
	}
	d := &diskFile{f: f}

	res = &Result{
		Path: outRawPath, Size: size,
		DiskGUID: l.diskGUID, ESPPartUUID: l.espGUID, RootPartUUID: l.rootGUID,
		RootFSUUID: l.fsUUID.String(), ESPVolumeID: l.volumeID,
		RootBPartUUID: l.rootBGUID, DataPartUUID: l.dataGUID, DataFSUUID: l.dataFSUUID.String(),
		Kernel: scan.kernel, Initrd: scan.initrd, Epoch: epoch,
		Files: scan.files, Dirs: scan.dirs, Symlinks: scan.symlinks,
	}

	table := &gpt.Table{
		LogicalSectorSize:  sectorSize,
		PhysicalSectorSize: sectorSize,
		ProtectiveMBR:      true,
		GUID:               l.diskGUID,
		Partitions: []*gpt.Partition{
			{Index: ESPIndex, Start: uint64(l.espStart / sectorSize), End: uint64((l.espStart+espSize)/sectorSize - 1),
				Size: espSize, Type: gpt.EFISystemPartition, Name: "EFI system", GUID: l.espGUID},
			{Index: RootIndex, Start: uint64(l.rootStart / sectorSize), End: uint64((l.rootStart+l.rootSize)/sectorSize - 1),
				Size: uint64(l.rootSize), Type: gpt.Type(appliance.RootPartitionType), Name: appliance.RootALabel, GUID: l.rootGUID},
			{Index: appliance.RootBPartition, Start: uint64(l.rootBStart / sectorSize), End: uint64((l.rootBStart+l.rootSize)/sectorSize - 1),
				Size: uint64(l.rootSize), Type: gpt.Type(appliance.RootPartitionType), Name: appliance.RootBLabel, GUID: l.rootBGUID},
			{Index: appliance.DataPartition, Start: uint64(l.dataStart / sectorSize), End: uint64((l.dataStart+l.dataSize)/sectorSize - 1),
				Size: uint64(l.dataSize), Type: gpt.Type(appliance.DataPartitionType), Name: appliance.DataLabel, GUID: l.dataGUID},
		},
	}
	if err := table.Write(d, size); err != nil {
		return nil, fmt.Errorf("writing partition table: %w", err)
	}

	p.printf("writing root filesystem (%s)\n", human(img.Used()))
	boot := &bootFiles{want: map[string][]byte{}}
	for _, name := range []string{scan.kernel, scan.initrd, rootBootloader} {
		if name != "" {
			boot.want[scan.resolve(name)] = nil
		}
	}
	open, stop := contents(ctx, src)
	defer stop()
	var done int64
	err = img.Write(f, l.rootStart, func(name string) (io.ReadCloser, error) {
		r, size, err := open(name)
		if err != nil {
			return nil, err
		}
		done += size
		p.percent("root filesystem", done, scan.bytes)
		return boot.capture(name, r)
	})
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		}
		return nil, fmt.Errorf("writing root filesystem: %w", err)
	}

	p.printf("writing data partition\n")
	if err := writeData(f, l); err != nil {
		return nil, err
	}

	p.printf("writing EFI system partition\n")
	kernel, _ := boot.get(scan.resolve(scan.kernel))
	var initrd []byte
	if scan.initrd != "" {
		initrd, _ = boot.get(scan.resolve(scan.initrd))
	}
	bl, hasBL := boot.get(scan.resolve(rootBootloader))
	if err := writeESP(d, l, spec, kernel, initrd, bl, hasBL && scan.hasBootloader, res, opts); err != nil {
		return nil, err
	}
	if err := d.Flush(); err != nil {
		return nil, fmt.Errorf("writing disk image %s: %w", outRawPath, err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("writing disk image %s: %w", outRawPath, err)
	}
	p.printf("wrote %s (%s virtual)\n", outRawPath, Size(size))
	return res, nil
}

// rootBootloader is where a root filesystem with systemd-boot-efi installed
// carries it.
const rootBootloader = "usr/lib/systemd/boot/efi/systemd-bootx64.efi"

// bootFiles keeps copies of the files the ESP needs (kernel, initrd,
// systemd-boot) as they stream into the root filesystem, so nothing is read
// twice.
type bootFiles struct {
	want map[string][]byte
}

func (b *bootFiles) capture(name string, r io.ReadCloser) (io.ReadCloser, error) {
	if _, ok := b.want[name]; !ok {
		return r, nil
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("reading /%s: %w", name, err)
	}
	b.want[name] = data
	return io.NopCloser(bytes.NewReader(data)), nil
}

// get returns a wanted file's content; empty files were never opened.
func (b *bootFiles) get(name string) ([]byte, bool) {
	data, ok := b.want[name]
	return data, ok
}

// layout is where things go on the disk and what they are called; every
// identifier is derived from the appliance name, version and epoch.
type layout struct {
	size                        int64
	espStart, rootStart         int64
	rootSize                    int64
	diskGUID, espGUID, rootGUID string
	fsUUID                      uuid.UUID
	hashSeed                    uuid.UUID
	volumeID                    uint32

	rootBStart, dataStart, dataSize int64
	rootBGUID, dataGUID             string
	dataFSUUID, dataHashSeed        uuid.UUID
}

func newLayout(spec *Spec, size int64, epoch time.Time) *layout {
	seed := fmt.Sprintf("outpost\x00%s\x00%s\x00%d", spec.Name, spec.Version, clampEpoch(epoch).Unix())
	derive := func(purpose string) uuid.UUID {
		sum := sha256.Sum256([]byte(seed + "\x00" + purpose))
		u, _ := uuid.FromBytes(sum[:16])
		u[6] = u[6]&0x0f | 0x40 // version 4 layout, as random GUIDs would have
		u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
		return u
	}
	vol := derive("fat-volume-id")
	// The backup GPT takes the last 33 sectors; keep the root aligned.
	end := (size - 33*sectorSize) / alignment * alignment
	l := &layout{
		size:      size,
		espStart:  alignment,
		rootStart: alignment + espSize,
		diskGUID:  strings.ToUpper(derive("disk").String()),
		espGUID:   appliance.StablePartUUID(spec.Name, "esp"),
		rootGUID:  strings.ToUpper(derive("root").String()),
		fsUUID:    derive("ext4"),
		hashSeed:  derive("ext4-hash-seed"),
		volumeID:  uint32(vol[0])<<24 | uint32(vol[1])<<16 | uint32(vol[2])<<8 | uint32(vol[3]),
	}
	// Data takes an eighth of the disk, between 64 MiB and 1 GiB; the two
	// roots share the rest equally.
	l.dataSize = min(max(size/8/alignment*alignment, 64<<20), 1<<30)
	l.rootSize = (end - l.rootStart - l.dataSize) / 2 / alignment * alignment
	l.rootBStart = l.rootStart + l.rootSize
	l.dataStart = l.rootBStart + l.rootSize
	l.dataSize = end - l.dataStart
	l.rootBGUID = appliance.StablePartUUID(spec.Name, "root-b")
	l.dataGUID = appliance.StablePartUUID(spec.Name, "data")
	l.dataFSUUID = derive("data-ext4")
	l.dataHashSeed = derive("data-ext4-hash-seed")
	return l
}

// writeData makes the data partition's ext4: empty but for the directories
// the appliance keeps there (the journal, the connector's identity).
func writeData(f io.WriterAt, l *layout) error {
	img := ext4img.New(l.dataSize)
	t := clampEpoch(time.Time{})
	for _, e := range []ext4img.Entry{
		{Path: "", Mode: fs.ModeDir | 0o755, ModTime: t},
		{Path: "journal", Mode: fs.ModeDir | fs.ModeSetgid | 0o755, ModTime: t},
		{Path: "tls", Mode: fs.ModeDir | 0o700, ModTime: t},
	} {
		if err := img.Add(e); err != nil {
			return fmt.Errorf("data partition: %w", err)
		}
	}
	if err := img.Layout(ext4img.Options{UUID: l.dataFSUUID, HashSeed: l.dataHashSeed, Label: appliance.DataLabel, Time: t}); err != nil {
		return fmt.Errorf("data partition: %w", err)
	}
	if err := img.Write(f, l.dataStart, func(name string) (io.ReadCloser, error) {
		return nil, fmt.Errorf("data partition: no file %s", name)
	}); err != nil {
		return fmt.Errorf("data partition: %w", err)
	}
	return nil
}

func clampEpoch(t time.Time) time.Time {
	if t.IsZero() || t.Before(time.Unix(0, 0)) {
		return time.Unix(0, 0).UTC()
	}
	return t.UTC().Truncate(time.Second)
}

type scanResult struct {
	bytes                 int64 // regular file data
	kernel, initrd        string
	newest                time.Time
	files, dirs, symlinks int
	hasBootloader         bool
	hardlinks             map[string]string // link path → target path
}

// resolve follows a hard link to the path whose content is written.
func (r *scanResult) resolve(p string) string {
	if t, ok := r.hardlinks[p]; ok {
		return t
	}
	return p
}

// scanSource adds every entry to img, times clamped to epoch (when given;
// otherwise the newest modification time becomes the epoch, which clamps
// nothing), and finds the newest kernel and its initrd in boot/.
func scanSource(ctx context.Context, src source, img *ext4img.Image, epoch time.Time) (*scanResult, error) {
	r := scanResult{hardlinks: map[string]string{}}
	var kernels []string
	initrds := map[string]bool{}
	limit := clampEpoch(epoch)
	err := src.Walk(func(e *entry) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		switch {
		case e.Hardlink:
			r.hardlinks[e.Path] = e.Link
		case e.Mode.IsDir():
			r.dirs++
		case e.Mode.IsRegular():
			r.files++
			r.bytes += e.Size
		case e.Mode&fs.ModeSymlink != 0:
			r.symlinks++
		}
		if e.ModTime.After(r.newest) {
			r.newest = e.ModTime
		}
		t := e.ModTime
		if !epoch.IsZero() && t.After(limit) {
			t = limit
		}
		if err := img.Add(ext4img.Entry{
			Path: e.Path, Mode: e.Mode, UID: uint32(e.UID), GID: uint32(e.GID), ModTime: t,
			Size: e.Size, Link: e.Link, Hardlink: e.Hardlink, Major: e.Major, Minor: e.Minor,
		}); err != nil {
			return fmt.Errorf("root filesystem %s: %w", src, err)
		}
		if e.Path == rootBootloader && (e.Mode.IsRegular() || e.Hardlink) {
			r.hasBootloader = true
		}
		if dir, name := path.Split(e.Path); dir == "boot/" && (e.Mode.IsRegular() || e.Hardlink) {
			if v, ok := strings.CutPrefix(name, "vmlinuz-"); ok {
				kernels = append(kernels, v)
			}
			if v, ok := strings.CutPrefix(name, "initrd.img-"); ok {
				initrds[v] = true
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(kernels) > 0 {
		sort.Slice(kernels, func(i, j int) bool { return versionLess(kernels[i], kernels[j]) })
		v := kernels[len(kernels)-1]
		r.kernel = "boot/vmlinuz-" + v
		if initrds[v] {
			r.initrd = "boot/initrd.img-" + v
		}
	}
	return &r, nil
}

// versionLess compares kernel versions such as 6.1.0-9-cloud-amd64 and
// 6.1.0-28-cloud-amd64 by their numeric runs.
func versionLess(a, b string) bool {
	split := func(s string) []string {
		return strings.FieldsFunc(s, func(r rune) bool { return r == '.' || r == '-' || r == '+' || r == '~' })
	}
	as, bs := split(a), split(b)
	for i := 0; i < len(as) && i < len(bs); i++ {
		ai, aerr := strconv.Atoi(as[i])
		bi, berr := strconv.Atoi(bs[i])
		if aerr == nil && berr == nil {
			if ai != bi {
				return ai < bi
			}
			continue
		}
		if as[i] != bs[i] {
			return as[i] < bs[i]
		}
	}
	return len(as) < len(bs)
}

// writeESP makes the FAT32 EFI system partition (appliance/boot.go):
// systemd-boot as the removable-media loader, loader.conf choosing the
// first outpost-* entry, slot a's kernel and initrd, and the built-in
// entry for slot a. It must leave room for slot b's kernel and initrd,
// which an upgrade adds beside them.
func writeESP(d *diskFile, l *layout, spec *Spec, kernel, initrd, rootBoot []byte, inRoot bool, res *Result, opts Options) error {
	boot, from, err := bootloader(rootBoot, inRoot, opts.Bootloader)
	if err != nil {
		return err
	}
	res.Bootloader = from
	slot := appliance.SlotA
	if err := espRoom(int64(len(boot)), int64(len(kernel)+len(initrd)), espSize); err != nil {
		return err
	}
	esp, err := fat32.Create(d, espSize, l.espStart, sectorSize, "ESP", true)
	if err != nil {
		return fmt.Errorf("creating EFI system partition: %w", err)
	}
	res.KernelOptions = "root=PARTUUID=" + strings.ToLower(l.rootGUID) + " rw console=tty0 console=ttyS0,115200"
	if opts.KernelArgs != "" {
		res.KernelOptions += " " + opts.KernelArgs
	}
	entryConf := fmt.Sprintf("title %s %s\nversion %s\nlinux %s\n", spec.Name, spec.Version, spec.Version, appliance.SlotKernel(slot))
	type file struct {
		path string
		data []byte
	}
	files := []file{
		{"/EFI/BOOT/BOOTX64.EFI", boot},
		{appliance.SlotKernel(slot), kernel},
	}
	if res.Initrd != "" {
		files = append(files, file{appliance.SlotInitrd(slot), initrd})
		entryConf += fmt.Sprintf("initrd %s\n", appliance.SlotInitrd(slot))
	}
	entryConf += "options " + res.KernelOptions + "\n"
	files = append(files,
		file{"/loader/loader.conf", []byte("default " + appliance.LoaderDefault + "\ntimeout 0\neditor no\nconsole-mode keep\n")},
		file{appliance.EntriesDir + "/" + appliance.EntryFile(1, slot, -1), []byte(entryConf)},
	)
	for _, dir := range []string{"/EFI/BOOT", appliance.EntriesDir, path.Dir(appliance.SlotKernel(slot))} {
		if err := esp.Mkdir(dir); err != nil {
			return fmt.Errorf("EFI system partition: %s: %w", dir, err)
		}
	}
	for _, f := range files {
		w, err := esp.OpenFile(f.path, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return fmt.Errorf("EFI system partition: %s: %w", f.path, err)
		}
		if _, err := w.Write(f.data); err != nil {
			return fmt.Errorf("EFI system partition: %s: %w", f.path, err)
		}
		if err := w.Close(); err != nil {
			return fmt.Errorf("EFI system partition: %s: %w", f.path, err)
		}
	}
	if err := fixFAT32(d, l.espStart, clampEpoch(opts.Epoch), l.volumeID); err != nil {
		return fmt.Errorf("EFI system partition: %w", err)
	}
	return nil
}

// espRoom checks that an ESP of size bytes holds systemd-boot and two
// kernel+initrd sets of set bytes (slot a's, and slot b's that an upgrade
// writes beside them), with a tenth to spare for FAT and loader entries.
func espRoom(boot, set, size int64) error {
	if need := boot + 2*set; need > size*9/10 {
		return fmt.Errorf("EFI system partition: systemd-boot (%s) and two kernel+initrd sets (%s each: slot a's, and slot b's after an upgrade) need %s, more than the %s partition holds with room to spare; use a smaller kernel or initrd (e.g. MODULES=dep in initramfs.conf)",
			human(boot), human(set), human(need), human(size))
	}
	return nil
}

// bootloader returns systemd-boot from the root filesystem (inRoot), else
// from hostPath (default HostBootloader), and says where it came from.
func bootloader(fromRoot []byte, inRoot bool, hostPath string) ([]byte, string, error) {
	if inRoot {
		return fromRoot, "/" + rootBootloader + " in the root filesystem", nil
	}
	if hostPath == "" {
		hostPath = HostBootloader
	}
	b, err := os.ReadFile(hostPath)
	if err != nil {
		return nil, "", fmt.Errorf("systemd-boot: the root filesystem has no /%s and the build host has none (%w); install systemd-boot-efi in the root filesystem or on this machine (apt-get install systemd-boot-efi)", rootBootloader, err)
	}
	return b, hostPath + " on the build host", nil
}

type progress struct {
	w    io.Writer
	last int64
}

func (p *progress) printf(format string, a ...any) {
	if p.w != nil {
		fmt.Fprintf(p.w, format, a...)
	}
}

func (p *progress) percent(what string, done, total int64) {
	if p.w == nil || total == 0 {
		return
	}
	pc := done * 100 / total
	if pc >= p.last+5 {
		p.last = pc - pc%5
		fmt.Fprintf(p.w, "%s: %d%%\n", what, p.last)
	}
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%d KiB", (n+1023)/1024)
	}
}
