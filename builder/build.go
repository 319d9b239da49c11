package builder

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/filesystem/ext4"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/google/uuid"
)

// HostBootloader is where Debian's systemd-boot-efi package puts systemd-boot;
// Build uses it when the root filesystem carries none.
const HostBootloader = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"

const (
	sectorSize = 512
	alignment  = 1 << 20   // partitions start on 1 MiB boundaries
	espSize    = 256 << 20 // EFI system partition
	// ESPIndex and RootIndex are the GPT partition numbers.
	ESPIndex  = 1
	RootIndex = 2
	// maxChunk bounds the memory used to copy one file: go-diskfs allocates
	// extents per Write, so fewer, larger writes give contiguous files.
	maxChunk = 64 << 20
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
}

// Result describes the disk Build wrote.
type Result struct {
	Path          string
	Size          int64  // virtual size in bytes
	DiskGUID      string // GPT disk GUID
	ESPPartUUID   string
	RootPartUUID  string // what root=PARTUUID= names
	RootFSUUID    string
	ESPVolumeID   uint32
	Kernel        string // path in the root filesystem, e.g. boot/vmlinuz-6.1.0-28-cloud-amd64
	Initrd        string // "" when the root filesystem has none
	Bootloader    string // where systemd-boot came from
	KernelOptions string
	Files         int
	Dirs          int
	Symlinks      int
	// Skipped lists what go-diskfs cannot represent and Build left out or
	// changed (device nodes, FIFOs, hard links copied, symlink owners).
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
	src, err := openSource(rootfs)
	if err != nil {
		return nil, err
	}
	size := (int64(spec.Hardware.Disk.Size) + alignment - 1) / alignment * alignment
	p := &progress{w: opts.Progress}

	p.printf("scanning %s\n", src)
	scan, err := scanSource(ctx, src)
	if err != nil {
		return nil, err
	}
	if opts.Epoch.IsZero() {
		opts.Epoch = scan.newest
	}
	l := newLayout(spec, size, opts.Epoch)
	if scan.kernel == "" {
		return nil, fmt.Errorf("%w: %s has no boot/vmlinuz-*; install a kernel package (e.g. linux-image-cloud-amd64) in it", ErrNoKernel, src)
	}
	if avail := ext4Capacity(l.rootSize); scan.need > avail {
		return nil, fmt.Errorf("%w: %s needs about %s but the root partition of a %s disk holds about %s; raise hardware.disk.size",
			ErrTooLarge, src, human(scan.need), Size(size), human(avail))
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
		Kernel: scan.kernel, Initrd: scan.initrd,
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
				Size: uint64(l.rootSize), Type: gpt.LinuxFilesystem, Name: "root", GUID: l.rootGUID},
		},
	}
	if err := table.Write(d, size); err != nil {
		return nil, fmt.Errorf("writing partition table: %w", err)
	}

	p.printf("writing root filesystem (%s)\n", human(scan.need))
	rootFS, err := ext4.Create(d, l.rootSize, l.rootStart, sectorSize, &ext4.Params{
		UUID:       &l.fsUUID,
		VolumeName: "root",
	})
	if err != nil {
		return nil, fmt.Errorf("creating ext4 root filesystem: %w", err)
	}
	w := &rootWriter{fs: rootFS, epoch: clampEpoch(opts.Epoch), res: res, p: p, total: scan.need}
	if err := src.Walk(func(e *entry) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return w.add(e)
	}); err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		}
		return nil, fmt.Errorf("writing root filesystem: %w", err)
	}
	if err := w.finish(); err != nil {
		return nil, err
	}

	p.printf("writing EFI system partition\n")
	if err := writeESP(d, l, spec, rootFS, res, opts); err != nil {
		return nil, err
	}
	if err := d.Flush(); err != nil {
		return nil, fmt.Errorf("writing disk image %s: %w", outRawPath, err)
	}
	if err := normalizeExt4(f, l.rootStart, clampEpoch(opts.Epoch), l.hashSeed); err != nil {
		return nil, fmt.Errorf("making the root filesystem reproducible: %w", err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("writing disk image %s: %w", outRawPath, err)
	}
	p.printf("wrote %s (%s virtual)\n", outRawPath, Size(size))
	return res, nil
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
		espGUID:   strings.ToUpper(derive("esp").String()),
		rootGUID:  strings.ToUpper(derive("root").String()),
		fsUUID:    derive("ext4"),
		hashSeed:  derive("ext4-hash-seed"),
		volumeID:  uint32(vol[0])<<24 | uint32(vol[1])<<16 | uint32(vol[2])<<8 | uint32(vol[3]),
	}
	l.rootSize = end - l.rootStart
	return l
}

func clampEpoch(t time.Time) time.Time {
	if t.IsZero() || t.Before(time.Unix(0, 0)) {
		return time.Unix(0, 0).UTC()
	}
	return t.UTC().Truncate(time.Second)
}

// ext4Capacity estimates the bytes go-diskfs's ext4 can hold in a partition
// of size bytes: minus inode tables (256 bytes per 8 KiB), the journal, group
// metadata.
func ext4Capacity(size int64) int64 {
	return size - size/32 - size/64 - 128<<20
}

type scanResult struct {
	need           int64 // bytes the tree needs, in 4 KiB blocks
	kernel, initrd string
	newest         time.Time
}

// scanSource sums what the tree needs and finds the newest kernel and its
// initrd in boot/.
func scanSource(ctx context.Context, src source) (*scanResult, error) {
	var r scanResult
	var kernels []string
	initrds := map[string]bool{}
	err := src.Walk(func(e *entry) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		switch {
		case e.Mode.IsDir():
			r.need += 4096
		case e.Mode.IsRegular():
			r.need += (e.Size + 4095) / 4096 * 4096
		case e.Mode&fs.ModeSymlink != 0 && len(e.Link) >= 60:
			r.need += 4096
		}
		if e.ModTime.After(r.newest) {
			r.newest = e.ModTime
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

// rootWriter copies entries into the ext4 filesystem.
type rootWriter struct {
	fs    *ext4.FileSystem
	epoch time.Time
	res   *Result
	p     *progress
	total int64
	done  int64
	dirs  []*entry // timestamps set last: adding children changes them
	buf   []byte
	// attrOf is each written directory's owner and mode: go-diskfs gives a
	// new entry its parent's, so equal ones need no Chown or Chmod (each a
	// path lookup that re-reads directories).
	attrOf map[string]attr
}

type attr struct {
	uid, gid int
	mode     fs.FileMode
}

func (w *rootWriter) clamp(t time.Time) time.Time {
	if t.IsZero() || t.After(w.epoch) {
		return w.epoch
	}
	return t.Truncate(time.Second)
}

func (w *rootWriter) skip(format string, a ...any) {
	w.res.Skipped = append(w.res.Skipped, fmt.Sprintf(format, a...))
}

func (w *rootWriter) add(e *entry) error {
	p := e.Path
	switch {
	case e.Mode.IsDir():
		if p != "" {
			if err := w.fs.Mkdir(p); err != nil {
				return fmt.Errorf("/%s: %w", p, err)
			}
			if err := w.attrs(e); err != nil {
				return err
			}
		}
		w.dirs = append(w.dirs, e)
		w.res.Dirs++
		w.done += 4096
	case e.Mode&fs.ModeSymlink != 0:
		if err := w.fs.Symlink(e.Link, p); err != nil {
			return fmt.Errorf("/%s: symlink: %w", p, err)
		}
		if e.UID != 0 || e.GID != 0 {
			w.skip("/%s: symlink owner %d:%d not kept (go-diskfs cannot chown a link; it is owned by its directory's owner)", p, e.UID, e.GID)
		}
		t := w.clamp(e.ModTime)
		if err := w.fs.Chtimes(p, t, t, t); err != nil {
			return fmt.Errorf("/%s: %w", p, err)
		}
		w.res.Symlinks++
	case e.Mode.IsRegular() && e.Hardlink:
		// go-diskfs has no Link: copy the target's content into a new inode.
		r, err := w.fs.OpenFile(e.Link, os.O_RDONLY)
		if err != nil {
			return fmt.Errorf("/%s: hard link to /%s: %w", p, e.Link, err)
		}
		fi, err := w.fs.Stat(e.Link)
		if err != nil {
			return fmt.Errorf("/%s: hard link to /%s: %w", p, e.Link, err)
		}
		e.Size = fi.Size()
		e.Mode = fi.Mode()
		if st, ok := fi.Sys().(*ext4.StatT); ok {
			e.UID, e.GID = int(st.UID), int(st.GID)
		}
		e.open = func() (io.ReadCloser, error) { return io.NopCloser(r), nil }
		w.skip("/%s: hard link to /%s stored as a copy (go-diskfs has no hard links)", p, e.Link)
		return w.file(e)
	case e.Mode.IsRegular():
		return w.file(e)
	default:
		w.skip("/%s: %s not stored (go-diskfs cannot create device nodes, FIFOs or sockets)", p, kind(e.Mode))
	}
	return nil
}

func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	case m&fs.ModeNamedPipe != 0:
		return "FIFO"
	case m&fs.ModeSocket != 0:
		return "socket"
	}
	return "special file"
}

func (w *rootWriter) file(e *entry) error {
	p := e.Path
	out, err := w.fs.OpenFile(p, os.O_CREATE|os.O_RDWR)
	if err != nil {
		return fmt.Errorf("/%s: %w", p, err)
	}
	in, err := e.open()
	if err != nil {
		return fmt.Errorf("/%s: %w", p, err)
	}
	defer in.Close()
	if want := min(e.Size, maxChunk); int64(len(w.buf)) < want {
		w.buf = make([]byte, want)
	}
	for n := int64(0); n < e.Size; {
		chunk := w.buf[:min(e.Size-n, int64(len(w.buf)))]
		if _, err := io.ReadFull(in, chunk); err != nil {
			return fmt.Errorf("/%s: reading: %w", p, err)
		}
		if _, err := out.Write(chunk); err != nil {
			// go-diskfs has no sentinel for a full filesystem; scanSource's
			// estimate catches most cases before anything is written.
			if strings.Contains(err.Error(), "could not allocate") {
				return fmt.Errorf("%w: ran out of space writing /%s; raise hardware.disk.size", ErrTooLarge, p)
			}
			return fmt.Errorf("/%s: writing: %w", p, err)
		}
		n += int64(len(chunk))
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("/%s: %w", p, err)
	}
	w.res.Files++
	w.done += (e.Size + 4095) / 4096 * 4096
	w.p.percent("root filesystem", w.done, w.total)
	if err := w.attrs(e); err != nil {
		return err
	}
	t := w.clamp(e.ModTime)
	if err := w.fs.Chtimes(p, t, t, t); err != nil {
		return fmt.Errorf("/%s: %w", p, err)
	}
	return nil
}

func (w *rootWriter) attrs(e *entry) error {
	a := attr{e.UID, e.GID, e.Mode & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)}
	parent, known := w.attrOf[path.Dir(e.Path)]
	if e.Mode.IsDir() {
		if w.attrOf == nil {
			w.attrOf = map[string]attr{}
		}
		w.attrOf[e.Path] = a
	}
	if !known || parent.uid != a.uid || parent.gid != a.gid {
		if err := w.fs.Chown(e.Path, a.uid, a.gid); err != nil {
			return fmt.Errorf("/%s: chown: %w", e.Path, err)
		}
	}
	if !known || parent.mode != a.mode {
		if err := w.fs.Chmod(e.Path, a.mode); err != nil {
			return fmt.Errorf("/%s: chmod: %w", e.Path, err)
		}
	}
	return nil
}

// finish sets directory timestamps, deepest first, now that no more entries
// are added.
func (w *rootWriter) finish() error {
	for i := len(w.dirs) - 1; i >= 0; i-- {
		e := w.dirs[i]
		if e.Path == "" {
			continue // the root's times are set by normalizeExt4
		}
		t := w.clamp(e.ModTime)
		if err := w.fs.Chtimes(e.Path, t, t, t); err != nil {
			return fmt.Errorf("/%s: %w", e.Path, err)
		}
	}
	return nil
}

// writeESP makes the FAT32 EFI system partition: systemd-boot as the
// removable-media loader, the kernel and initrd, and the boot entry.
func writeESP(d *diskFile, l *layout, spec *Spec, root *ext4.FileSystem, res *Result, opts Options) error {
	esp, err := fat32.Create(d, espSize, l.espStart, sectorSize, "ESP", true)
	if err != nil {
		return fmt.Errorf("creating EFI system partition: %w", err)
	}
	boot, from, err := bootloader(root, opts.Bootloader)
	if err != nil {
		return err
	}
	res.Bootloader = from
	kver := strings.TrimPrefix(res.Kernel, "boot/vmlinuz-")
	kernel, err := root.ReadFile(res.Kernel)
	if err != nil {
		return fmt.Errorf("reading kernel /%s back from the root filesystem: %w", res.Kernel, err)
	}
	res.KernelOptions = "root=PARTUUID=" + strings.ToLower(l.rootGUID) + " rw console=tty0 console=ttyS0,115200"
	if opts.KernelArgs != "" {
		res.KernelOptions += " " + opts.KernelArgs
	}
	entryConf := fmt.Sprintf("title %s %s\nversion %s\nlinux /vmlinuz-%s\n", spec.Name, spec.Version, kver, kver)
	files := []struct {
		path string
		data []byte
	}{
		{"/EFI/BOOT/BOOTX64.EFI", boot},
		{"/vmlinuz-" + kver, kernel},
	}
	if res.Initrd != "" {
		initrd, err := root.ReadFile(res.Initrd)
		if err != nil {
			return fmt.Errorf("reading initrd /%s back from the root filesystem: %w", res.Initrd, err)
		}
		files = append(files, struct {
			path string
			data []byte
		}{"/initrd.img-" + kver, initrd})
		entryConf += fmt.Sprintf("initrd /initrd.img-%s\n", kver)
	}
	entryConf += "options " + res.KernelOptions + "\n"
	files = append(files,
		struct {
			path string
			data []byte
		}{"/loader/loader.conf", []byte("default outpost.conf\ntimeout 0\nconsole-mode keep\neditor no\n")},
		struct {
			path string
			data []byte
		}{"/loader/entries/outpost.conf", []byte(entryConf)},
	)
	var total int64
	for _, f := range files {
		total += int64(len(f.data))
	}
	if total > espSize*9/10 {
		return fmt.Errorf("EFI system partition: bootloader, kernel and initrd take %s, more than the %s partition holds; use a smaller initrd", human(total), human(espSize))
	}
	for _, dir := range []string{"/EFI/BOOT", "/loader/entries"} {
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

// bootloader returns systemd-boot from the root filesystem, else from path
// (default HostBootloader), and says where it came from.
func bootloader(root *ext4.FileSystem, hostPath string) ([]byte, string, error) {
	const inRoot = "usr/lib/systemd/boot/efi/systemd-bootx64.efi"
	if b, err := root.ReadFile(inRoot); err == nil {
		return b, "/" + inRoot + " in the root filesystem", nil
	}
	if hostPath == "" {
		hostPath = HostBootloader
	}
	b, err := os.ReadFile(hostPath)
	if err != nil {
		return nil, "", fmt.Errorf("systemd-boot: the root filesystem has no /%s and the build host has none (%w); install systemd-boot-efi in the root filesystem or on this machine (apt-get install systemd-boot-efi)", inRoot, err)
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
