// Package ext4img writes an ext4 filesystem image in one pass, from a list
// of entries known up front: the layout (inode numbers, directory blocks,
// file extents, group metadata) is computed before any byte is written, then
// file data goes out in large sequential writes at precomputed offsets and
// the metadata follows. Nothing is read back, so it is as fast as reading the
// source tree.
//
// The filesystem is what mkfs.ext4 would make with the features
// has_journal, filetype, extent, sparse_super, large_file, huge_file,
// dir_nlink and extra_isize: 4 KiB blocks, 256-byte inodes, a journal of
// mkfs's default size in inode 8 (empty and clean), no metadata checksums, linear directories (no htree), lost+found in inode 11. Files
// are allocated contiguously, so most have one extent. Regular files,
// directories, symlinks (fast and slow), hard links, character and block
// devices, FIFOs and sockets are stored with their modes, owners and
// modification times; access, change and creation times equal the
// modification time. Extended attributes are not stored.
//
// The package is not a general ext4 library: it cannot read or modify an
// image. Its memory use grows with the number of entries, not their size.
package ext4img

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"time"
)

// ErrTooLarge is returned by Layout when the entries do not fit the size
// given to New.
var ErrTooLarge = errors.New("does not fit the filesystem")

// Entry is one node of the tree. Parents are added before children.
type Entry struct {
	Path     string // slash-separated, relative to the root, no leading '/'; "" is the root
	Mode     fs.FileMode
	UID, GID uint32
	ModTime  time.Time // stored as whole seconds
	Size     int64     // regular files
	// Link is a symlink's target, or for a hard link (Hardlink) the Path
	// of an entry added before.
	Link         string
	Hardlink     bool
	Major, Minor uint32 // device nodes
}

// Options name the filesystem. The zero value is usable.
type Options struct {
	UUID     [16]byte
	HashSeed [16]byte
	Label    string
	// Time is the superblock's creation, mount and write time.
	Time time.Time
	// BytesPerInode sizes the inode tables as mkfs's -i does; 0 means
	// 16384. More inodes are made when the entries need them.
	BytesPerInode int64
	// NoJournal leaves the journal out (mkfs -O ^has_journal).
	NoJournal bool
}

const (
	blockSize      = 4096
	blocksPerGroup = 8 * blockSize
	inodeSize      = 256
	extraIsize     = 32
	descSize       = 32
	firstIno       = 11 // lost+found; added entries follow
	journalIno     = 8
	rootIno        = 2
	maxExtentLen   = 32768
	extentsPerLeaf = (blockSize - 12) / 12
)

// node is one inode.
type node struct {
	path         string
	mode         fs.FileMode
	uid, gid     uint32
	mtime        int64
	size         int64
	link         string
	major, minor uint32
	ino          uint32
	nlink        uint32
	subdirs      uint32
	dirents      []dirent // directories
	runs         []run    // data blocks, in logical order
	leaves       []run    // extent tree leaf blocks (depth 1)
}

type dirent struct {
	name string
	node int32
}

// run is a physical block range.
type run struct{ start, len uint32 }

// Image collects entries, lays them out and writes them.
type Image struct {
	opts   Options
	size   int64
	nodes  []*node // nodes[0] is the root, nodes[1] lost+found
	byPath map[string]int32

	// set by Layout
	laidOut   bool
	blocks    uint32 // filesystem size in blocks
	groups    uint32
	ipg       uint32 // inodes per group
	itBlocks  uint32 // inode table blocks per group
	gdtBlocks uint32
	cursor    uint32 // next free block
	journal   *node  // inode 8; nil without a journal
}

// New returns an empty image of size bytes (rounded down to 4 KiB blocks)
// holding only the root directory and lost+found.
func New(size int64) *Image {
	im := &Image{size: size, byPath: map[string]int32{}}
	im.nodes = []*node{
		{path: "", mode: fs.ModeDir | 0o755, mtime: unsetTime, ino: rootIno, nlink: 2},
		{path: "lost+found", mode: fs.ModeDir | 0o700, mtime: unsetTime, ino: firstIno, nlink: 2},
	}
	im.byPath[""] = 0
	im.byPath["lost+found"] = 1
	im.nodes[0].dirents = []dirent{{"lost+found", 1}}
	im.nodes[0].subdirs = 1
	return im
}

// unsetTime marks the root's and lost+found's times until Layout gives them
// Options.Time.
const unsetTime = -1 << 62

// Add adds an entry; its parent directory must have been added before. A
// directory added again (the root "" and lost+found exist from the start)
// takes the new attributes and keeps its entries.
func (im *Image) Add(e Entry) error {
	if im.laidOut {
		return errors.New("ext4img: Add after Layout")
	}
	p := e.Path
	if p != "" && (!fs.ValidPath(p) || p == ".") {
		return fmt.Errorf("/%s: not a clean relative path", p)
	}
	if i, ok := im.byPath[p]; ok && im.nodes[i].mode.IsDir() && e.Mode.IsDir() && !e.Hardlink {
		n := im.nodes[i]
		n.mode, n.uid, n.gid, n.mtime = e.Mode, e.UID, e.GID, e.ModTime.Unix()
		return nil
	}
	if p == "" {
		return errors.New("/: the root must be a directory")
	}
	if _, ok := im.byPath[p]; ok {
		return fmt.Errorf("/%s: added twice", p)
	}
	dir, name := path.Split(p)
	dir = trimSlash(dir)
	pi, ok := im.byPath[dir]
	if !ok || !im.nodes[pi].mode.IsDir() {
		return fmt.Errorf("/%s: parent /%s is not a directory added before", p, dir)
	}
	if len(name) > 255 {
		return fmt.Errorf("/%s: name longer than 255 bytes", p)
	}
	parent := im.nodes[pi]
	if e.Hardlink {
		ti, ok := im.byPath[e.Link]
		if !ok {
			return fmt.Errorf("/%s: hard link to /%s, which was not added before", p, e.Link)
		}
		t := im.nodes[ti]
		if t.mode.IsDir() {
			return fmt.Errorf("/%s: hard link to directory /%s", p, e.Link)
		}
		if t.nlink >= 65000 {
			return fmt.Errorf("/%s: more than 65000 hard links to /%s", p, e.Link)
		}
		t.nlink++
		parent.dirents = append(parent.dirents, dirent{name, ti})
		im.byPath[p] = ti
		return nil
	}
	n := &node{path: p, mode: e.Mode, uid: e.UID, gid: e.GID, mtime: e.ModTime.Unix(), nlink: 1,
		major: e.Major, minor: e.Minor}
	switch {
	case e.Mode.IsDir():
		n.nlink = 2
		parent.subdirs++
	case e.Mode.IsRegular():
		if e.Size < 0 {
			return fmt.Errorf("/%s: negative size", p)
		}
		n.size = e.Size
	case e.Mode&fs.ModeSymlink != 0:
		if len(e.Link) == 0 || len(e.Link) >= blockSize {
			return fmt.Errorf("/%s: symlink target of %d bytes (1 to %d allowed)", p, len(e.Link), blockSize-1)
		}
		n.link, n.size = e.Link, int64(len(e.Link))
	case e.Mode&(fs.ModeDevice|fs.ModeNamedPipe|fs.ModeSocket) != 0:
	default:
		return fmt.Errorf("/%s: unsupported file type %v", p, e.Mode.Type())
	}
	i := int32(len(im.nodes))
	im.nodes = append(im.nodes, n)
	im.byPath[p] = i
	parent.dirents = append(parent.dirents, dirent{name, i})
	return nil
}

func trimSlash(s string) string {
	if len(s) > 0 && s[len(s)-1] == '/' {
		return s[:len(s)-1]
	}
	return s
}

func hasSuper(g uint32) bool {
	if g <= 1 {
		return true
	}
	for _, b := range []uint32{3, 5, 7} {
		n := b
		for n < g {
			n *= b
		}
		if n == g {
			return true
		}
	}
	return false
}

// groupStart is the first block of group g.
func groupStart(g uint32) uint32 { return g * blocksPerGroup }

// metaBlocks is the number of metadata blocks at the start of group g.
func (im *Image) metaBlocks(g uint32) uint32 {
	n := 2 + im.itBlocks // block bitmap, inode bitmap, inode table
	if hasSuper(g) {
		n += 1 + im.gdtBlocks
	}
	return n
}

func (im *Image) groupEnd(g uint32) uint32 {
	return min(groupStart(g+1), im.blocks)
}

// Layout assigns inode numbers and blocks, after the last Add and before
// Write. It fails with ErrTooLarge when the entries do not fit.
func (im *Image) Layout(opts Options) error {
	if im.laidOut {
		return errors.New("ext4img: Layout called twice")
	}
	if opts.BytesPerInode <= 0 {
		opts.BytesPerInode = 16384
	}
	im.opts = opts
	for _, n := range im.nodes[:2] {
		if n.mtime == unsetTime {
			n.mtime = opts.Time.Unix()
		}
	}
	blocks := im.size / blockSize
	if blocks > 1<<32-1 {
		return fmt.Errorf("ext4img: a filesystem of %d bytes needs the 64bit feature, which is not supported", im.size)
	}
	im.blocks = uint32(blocks)
	im.groups = (im.blocks + blocksPerGroup - 1) / blocksPerGroup
	inodes := uint64(len(im.nodes)) - 2 + firstIno // root and lost+found are reserved numbers
	for {
		if im.groups == 0 {
			return fmt.Errorf("%d bytes: %w", im.size, ErrTooLarge)
		}
		im.gdtBlocks = (im.groups*descSize + blockSize - 1) / blockSize
		want := uint64(im.blocks) * blockSize / uint64(im.opts.BytesPerInode)
		ipg := max((want+uint64(im.groups)-1)/uint64(im.groups), (inodes+uint64(im.groups)-1)/uint64(im.groups), 16)
		ipg = (ipg + 15) / 16 * 16
		if ipg > blocksPerGroup {
			return fmt.Errorf("%d files and directories: %w (at most %d inodes)", inodes, ErrTooLarge, uint64(im.groups)*blocksPerGroup)
		}
		im.ipg = uint32(ipg)
		im.itBlocks = im.ipg * inodeSize / blockSize
		last := im.groups - 1
		if im.blocks-groupStart(last) >= im.metaBlocks(last)+16 {
			break
		}
		// A last group too small for its metadata is left out, as mkfs does.
		im.blocks = groupStart(last)
		im.groups--
	}
	// Inode numbers in order of addition.
	ino := uint32(firstIno + 1)
	for _, n := range im.nodes[2:] {
		n.ino = ino
		ino++
	}
	// lost+found has room for entries without growing, as mkfs makes it.
	im.cursor = im.metaBlocks(0)
	if jb := journalBlocks(im.blocks); jb > 0 && !opts.NoJournal {
		im.journal = &node{path: "<journal>", mode: 0o600, mtime: opts.Time.Unix(), ino: journalIno, nlink: 1,
			size: int64(jb) * blockSize}
		if err := im.allocNode(im.journal, jb); err != nil {
			return err
		}
	}
	for _, n := range im.nodes {
		var nb uint32
		switch {
		case n.mode.IsDir():
			nb = uint32(len(im.dirBlocks(n, nil)))
			if n.ino == firstIno {
				nb = max(nb, 4)
			}
			n.size = int64(nb) * blockSize
		case n.mode.IsRegular():
			nb = uint32((n.size + blockSize - 1) / blockSize)
			if int64(nb)*blockSize < n.size {
				return fmt.Errorf("/%s: %w", n.path, ErrTooLarge)
			}
		case n.mode&fs.ModeSymlink != 0 && len(n.link) >= 60:
			nb = 1
		}
		if nb == 0 {
			continue
		}
		if err := im.allocNode(n, nb); err != nil {
			return err
		}
	}
	im.laidOut = true
	return nil
}

// allocNode gives n nb data blocks and, past four extents, leaf blocks for
// a depth-1 extent tree.
func (im *Image) allocNode(n *node, nb uint32) error {
	var err error
	if n.runs, err = im.alloc(nb); err != nil {
		return fmt.Errorf("/%s: %w", n.path, err)
	}
	if ne := extentCount(n.runs); ne > 4 {
		leaves := (ne + extentsPerLeaf - 1) / extentsPerLeaf
		if leaves > 4 {
			return fmt.Errorf("/%s: %d extents need a deeper extent tree than this writer makes", n.path, ne)
		}
		if n.leaves, err = im.alloc(uint32(leaves)); err != nil {
			return fmt.Errorf("/%s: %w", n.path, err)
		}
	}
	return nil
}

// journalBlocks is mkfs's default journal size for a filesystem of blocks
// 4 KiB blocks (ext2fs_default_journal_size).
func journalBlocks(blocks uint32) uint32 {
	for _, s := range []struct{ below, size uint32 }{
		{2048, 0}, {32768, 1024}, {256 << 10, 4096}, {512 << 10, 8192}, {4096 << 10, 16384},
		{8192 << 10, 32768}, {16384 << 10, 65536}, {32768 << 10, 131072},
	} {
		if blocks < s.below {
			return s.size
		}
	}
	return 262144
}

// journalSuper is the first block of an empty, clean jbd2 journal, as
// mkfs writes it (big-endian).
func (im *Image) journalSuper() []byte {
	be := binary.BigEndian
	b := make([]byte, blockSize)
	be.PutUint32(b[0x00:], 0xC03B3998) // JBD2 magic
	be.PutUint32(b[0x04:], 4)          // superblock v2
	be.PutUint32(b[0x0C:], blockSize)
	be.PutUint32(b[0x10:], uint32(im.journal.size/blockSize))
	be.PutUint32(b[0x14:], 1) // first log block
	be.PutUint32(b[0x18:], 1) // first expected transaction
	copy(b[0x30:0x40], im.opts.UUID[:])
	be.PutUint32(b[0x40:], 1) // users
	return b
}

// alloc takes n blocks from the cursor, skipping group metadata.
func (im *Image) alloc(n uint32) ([]run, error) {
	var runs []run
	for n > 0 {
		g := im.cursor / blocksPerGroup
		if g >= im.groups {
			return nil, fmt.Errorf("%w of %d MiB", ErrTooLarge, int64(im.blocks)*blockSize>>20)
		}
		if ds := groupStart(g) + im.metaBlocks(g); im.cursor < ds {
			im.cursor = ds
		}
		take := min(n, im.groupEnd(g)-im.cursor)
		if take == 0 {
			im.cursor = groupStart(g + 1)
			continue
		}
		if k := len(runs) - 1; k >= 0 && runs[k].start+runs[k].len == im.cursor {
			runs[k].len += take
		} else {
			runs = append(runs, run{im.cursor, take})
		}
		im.cursor += take
		n -= take
	}
	return runs, nil
}

// extent is one ext4 extent: len blocks at logical block lblk.
type extent struct{ lblk, start, len uint32 }

func extents(runs []run) []extent {
	var out []extent
	var l uint32
	for _, r := range runs {
		for off := uint32(0); off < r.len; {
			n := min(r.len-off, maxExtentLen)
			out = append(out, extent{l, r.start + off, n})
			l += n
			off += n
		}
	}
	return out
}

func extentCount(runs []run) int {
	n := 0
	for _, r := range runs {
		n += int((r.len + maxExtentLen - 1) / maxExtentLen)
	}
	return n
}

// dirBlocks packs a directory's entries into blocks: ".", "..", then the
// entries in order of addition. With buf nil it only counts (the blocks
// returned are nil slices).
func (im *Image) dirBlocks(n *node, buf []byte) [][]byte {
	type ent struct {
		name string
		ino  uint32
		typ  byte
	}
	parent := im.nodes[im.byPath[trimSlash(dirOf(n.path))]]
	all := make([]ent, 0, len(n.dirents)+2)
	all = append(all, ent{".", n.ino, 2}, ent{"..", parent.ino, 2})
	for _, d := range n.dirents {
		c := im.nodes[d.node]
		all = append(all, ent{d.name, c.ino, fileType(c.mode)})
	}
	var out [][]byte
	var blk []byte
	used, lastOff := 0, -1
	flush := func() {
		if blk != nil && lastOff >= 0 {
			binary.LittleEndian.PutUint16(blk[lastOff+4:], uint16(blockSize-lastOff))
		}
	}
	for i, e := range all {
		rec := 8 + (len(e.name)+3)/4*4
		if i == 0 || used+rec > blockSize {
			flush()
			if buf != nil {
				blk = buf[len(out)*blockSize : (len(out)+1)*blockSize]
			}
			out = append(out, blk)
			used, lastOff = 0, -1
		}
		if blk != nil {
			binary.LittleEndian.PutUint32(blk[used:], e.ino)
			binary.LittleEndian.PutUint16(blk[used+4:], uint16(rec))
			blk[used+6] = byte(len(e.name))
			blk[used+7] = e.typ
			copy(blk[used+8:], e.name)
		}
		lastOff = used
		used += rec
	}
	flush()
	return out
}

func dirOf(p string) string {
	if p == "" {
		return ""
	}
	d, _ := path.Split(p)
	return d
}

func fileType(m fs.FileMode) byte {
	switch {
	case m.IsDir():
		return 2
	case m.IsRegular():
		return 1
	case m&fs.ModeSymlink != 0:
		return 7
	case m&fs.ModeCharDevice != 0:
		return 3
	case m&fs.ModeDevice != 0:
		return 4
	case m&fs.ModeNamedPipe != 0:
		return 5
	case m&fs.ModeSocket != 0:
		return 6
	}
	return 0
}

// Used returns the bytes the laid-out filesystem uses, metadata included.
func (im *Image) Used() int64 {
	var used int64
	for g := uint32(0); g < im.groups; g++ {
		used += int64(im.groupUsed(g))
	}
	return used * blockSize
}

// groupUsed is the number of used blocks in group g: its metadata and the
// data blocks below the cursor.
func (im *Image) groupUsed(g uint32) uint32 {
	s := groupStart(g)
	used := im.metaBlocks(g)
	if im.cursor > s+used {
		used = min(im.cursor, im.groupEnd(g)) - s
	}
	return used
}

// Open returns the content of the regular file at path. Write calls it
// once for each regular file of non-zero size, in the order the files were
// added.
type Open func(path string) (io.ReadCloser, error)

// Write writes the laid-out filesystem to dst at offset off. The region
// must read as zeros (a new or truncated file): all-zero blocks are
// skipped, so a sparse file stays sparse.
func (im *Image) Write(dst io.WriterAt, off int64, open Open) error {
	if !im.laidOut {
		return errors.New("ext4img: Write before Layout")
	}
	w := &writer{im: im, dst: dst, off: off, buf: make([]byte, 4<<20)}
	for _, n := range im.nodes {
		if n.mode.IsRegular() && n.size > 0 {
			if err := w.file(n, open); err != nil {
				return err
			}
		}
	}
	for _, n := range im.nodes {
		switch {
		case n.mode.IsDir():
			buf := make([]byte, n.size)
			im.dirBlocks(n, buf)
			for i := blockSize; i < len(buf); i += blockSize {
				if binary.LittleEndian.Uint16(buf[i+4:]) == 0 { // lost+found's spare blocks
					binary.LittleEndian.PutUint16(buf[i+4:], blockSize)
				}
			}
			if err := w.runs(n.runs, buf, false); err != nil {
				return fmt.Errorf("/%s: %w", n.path, err)
			}
		case n.mode&fs.ModeSymlink != 0 && len(n.runs) > 0:
			buf := make([]byte, blockSize)
			copy(buf, n.link)
			if err := w.runs(n.runs, buf, false); err != nil {
				return fmt.Errorf("/%s: %w", n.path, err)
			}
		}
		if len(n.leaves) > 0 {
			if err := w.runs(n.leaves, im.leafBlocks(n), false); err != nil {
				return fmt.Errorf("/%s: %w", n.path, err)
			}
		}
	}
	if j := im.journal; j != nil {
		if err := w.write(im.journalSuper(), j.runs[0].start, false); err != nil {
			return fmt.Errorf("writing the journal: %w", err)
		}
		if len(j.leaves) > 0 {
			if err := w.runs(j.leaves, im.leafBlocks(j), false); err != nil {
				return fmt.Errorf("writing the journal's extent tree: %w", err)
			}
		}
	}
	if err := w.inodeTables(); err != nil {
		return err
	}
	return w.groupMeta()
}

type writer struct {
	im  *Image
	dst io.WriterAt
	off int64
	buf []byte
}

func (w *writer) at(blk uint32) int64 { return w.off + int64(blk)*blockSize }

// runs writes b across the physical runs, skipping all-zero blocks when
// sparse.
func (w *writer) runs(runs []run, b []byte, sparse bool) error {
	for _, r := range runs {
		n := min(int(r.len)*blockSize, len(b))
		if err := w.write(b[:n], r.start, sparse); err != nil {
			return err
		}
		b = b[n:]
		if len(b) == 0 {
			break
		}
	}
	return nil
}

var zeroBlock = make([]byte, blockSize)

// write writes b at block blk; with sparse, whole zero blocks are skipped.
func (w *writer) write(b []byte, blk uint32, sparse bool) error {
	if !sparse {
		_, err := w.dst.WriteAt(b, w.at(blk))
		return err
	}
	for len(b) > 0 {
		for len(b) > 0 && isZero(b[:min(len(b), blockSize)]) {
			b = b[min(len(b), blockSize):]
			blk++
		}
		n := 0
		for n < len(b) && !isZero(b[n:min(len(b), n+blockSize)]) {
			n = min(len(b), n+blockSize)
		}
		if n > 0 {
			if _, err := w.dst.WriteAt(b[:n], w.at(blk)); err != nil {
				return err
			}
			blk += uint32((n + blockSize - 1) / blockSize)
			b = b[n:]
		}
	}
	return nil
}

func isZero(b []byte) bool { return bytes.Equal(b, zeroBlock[:len(b)]) }

func (w *writer) file(n *node, open Open) error {
	r, err := open(n.path)
	if err != nil {
		return fmt.Errorf("/%s: %w", n.path, err)
	}
	defer r.Close()
	runs := n.runs
	var inRun uint32 // blocks of runs[0] already written
	for left := n.size; left > 0; {
		chunk := w.buf[:min(left, int64(len(w.buf)))]
		if _, err := io.ReadFull(r, chunk); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return fmt.Errorf("/%s: shorter than its %d bytes (did it change during the build?)", n.path, n.size)
			}
			return fmt.Errorf("/%s: reading: %w", n.path, err)
		}
		left -= int64(len(chunk))
		for len(chunk) > 0 {
			r := runs[0]
			nb := min(int(r.len-inRun)*blockSize, len(chunk))
			if err := w.write(chunk[:nb], r.start+inRun, true); err != nil {
				return fmt.Errorf("/%s: writing: %w", n.path, err)
			}
			chunk = chunk[nb:]
			inRun += uint32((nb + blockSize - 1) / blockSize)
			if inRun == r.len {
				runs, inRun = runs[1:], 0
			}
		}
	}
	return nil
}

// leafBlocks returns the extent tree leaves of n.
func (im *Image) leafBlocks(n *node) []byte {
	ext := extents(n.runs)
	var buf []byte
	for len(ext) > 0 {
		k := min(len(ext), extentsPerLeaf)
		blk := make([]byte, blockSize)
		putExtents(blk, ext[:k], extentsPerLeaf)
		buf = append(buf, blk...)
		ext = ext[k:]
	}
	return buf
}

func putExtentHeader(b []byte, entries, maxEntries, depth int) {
	le := binary.LittleEndian
	le.PutUint16(b[0:], 0xF30A)
	le.PutUint16(b[2:], uint16(entries))
	le.PutUint16(b[4:], uint16(maxEntries))
	le.PutUint16(b[6:], uint16(depth))
	le.PutUint32(b[8:], 0)
}

func putExtents(b []byte, ext []extent, maxEntries int) {
	putExtentHeader(b, len(ext), maxEntries, 0)
	le := binary.LittleEndian
	for i, e := range ext {
		o := 12 + 12*i
		le.PutUint32(b[o:], e.lblk)
		le.PutUint16(b[o+4:], uint16(e.len))
		le.PutUint16(b[o+6:], 0)
		le.PutUint32(b[o+8:], e.start)
	}
}

// timeFields splits seconds into the 32-bit field and the epoch bits of
// the extra field.
func timeFields(sec int64) (uint32, uint32) {
	lo := uint32(sec)
	return lo, uint32((sec-int64(int32(lo)))>>32) & 3
}

func (im *Image) putInode(b []byte, n *node) {
	le := binary.LittleEndian
	mode := uint16(n.mode.Perm())
	if n.mode&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if n.mode&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if n.mode&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	var ftype uint16
	switch fileType(n.mode) {
	case 1:
		ftype = 0x8000
	case 2:
		ftype = 0x4000
	case 3:
		ftype = 0x2000
	case 4:
		ftype = 0x6000
	case 5:
		ftype = 0x1000
	case 6:
		ftype = 0xC000
	case 7:
		ftype = 0xA000
	}
	le.PutUint16(b[0x00:], ftype|mode)
	le.PutUint16(b[0x02:], uint16(n.uid))
	le.PutUint32(b[0x04:], uint32(n.size))
	le.PutUint32(b[0x6C:], uint32(n.size>>32))
	t, tx := timeFields(n.mtime)
	for _, o := range []int{0x08, 0x0C, 0x10, 0x90} {
		le.PutUint32(b[o:], t)
	}
	for _, o := range []int{0x84, 0x88, 0x8C, 0x94} {
		le.PutUint32(b[o:], tx)
	}
	le.PutUint16(b[0x18:], uint16(n.gid))
	nlink := n.nlink
	if n.mode.IsDir() {
		nlink = 2 + n.subdirs
		if nlink >= 65000 {
			nlink = 1 // dir_nlink: too many to count
		}
	}
	le.PutUint16(b[0x1A:], uint16(nlink))
	var nblocks uint64
	for _, r := range n.runs {
		nblocks += uint64(r.len)
	}
	for _, r := range n.leaves {
		nblocks += uint64(r.len)
	}
	sectors := nblocks * (blockSize / 512)
	le.PutUint32(b[0x1C:], uint32(sectors))
	le.PutUint16(b[0x74:], uint16(sectors>>32))
	le.PutUint16(b[0x78:], uint16(n.uid>>16))
	le.PutUint16(b[0x7A:], uint16(n.gid>>16))
	le.PutUint16(b[0x80:], extraIsize)
	iblock := b[0x28 : 0x28+60]
	switch {
	case n.mode&fs.ModeSymlink != 0 && len(n.runs) == 0:
		copy(iblock, n.link) // fast symlink
	case n.mode&fs.ModeDevice != 0:
		if n.major < 256 && n.minor < 256 {
			le.PutUint32(iblock[0:], n.major<<8|n.minor)
		} else {
			le.PutUint32(iblock[4:], n.minor&0xff|n.major<<8|(n.minor&^0xff)<<12)
		}
	case n.mode.IsDir() || n.mode.IsRegular() || n.mode&fs.ModeSymlink != 0:
		le.PutUint32(b[0x20:], 0x80000) // EXT4_EXTENTS_FL
		if len(n.leaves) == 0 {
			putExtents(iblock, extents(n.runs), 4)
			break
		}
		ext := extents(n.runs)
		putExtentHeader(iblock, len(n.leaves), 4, 1)
		i := 0
		for _, lr := range n.leaves {
			for k := uint32(0); k < lr.len; k++ {
				o := 12 + 12*i
				le.PutUint32(iblock[o:], ext[i*extentsPerLeaf].lblk)
				le.PutUint32(iblock[o+4:], lr.start+k)
				le.PutUint16(iblock[o+8:], 0)
				i++
			}
		}
	}
}

// inodeTables writes the used part of every group's inode table.
func (w *writer) inodeTables() error {
	im := w.im
	last := uint32(firstIno + len(im.nodes) - 2) // highest inode number in use
	byIno := make(map[uint32]*node, 2)
	byIno[rootIno] = im.nodes[0]
	byIno[firstIno] = im.nodes[1]
	if im.journal != nil {
		byIno[journalIno] = im.journal
	}
	buf := make([]byte, int(im.itBlocks)*blockSize)
	for g := uint32(0); g < im.groups; g++ {
		first := g*im.ipg + 1
		if first > last {
			break
		}
		n := min(last-first+1, im.ipg)
		clear(buf)
		for k := uint32(0); k < n; k++ {
			ino := first + k
			var nd *node
			switch {
			case ino > firstIno:
				nd = im.nodes[ino-firstIno+1]
			default:
				nd = byIno[ino]
			}
			if nd != nil {
				im.putInode(buf[k*inodeSize:(k+1)*inodeSize], nd)
			}
		}
		used := (int(n)*inodeSize + blockSize - 1) / blockSize * blockSize
		itable := groupStart(g) + im.metaBlocks(g) - im.itBlocks
		if err := w.write(buf[:used], itable, true); err != nil {
			return fmt.Errorf("writing inode table of group %d: %w", g, err)
		}
	}
	return nil
}

// groupMeta writes bitmaps, group descriptors and superblocks.
func (w *writer) groupMeta() error {
	im := w.im
	le := binary.LittleEndian
	last := uint32(firstIno + len(im.nodes) - 2)
	gdt := make([]byte, im.gdtBlocks*blockSize)
	bitmap := make([]byte, blockSize)
	var freeBlocks, freeInodes uint64
	dirsIn := make([]uint32, im.groups)
	for _, n := range im.nodes {
		if n.mode.IsDir() {
			dirsIn[(n.ino-1)/im.ipg]++
		}
	}
	for g := uint32(0); g < im.groups; g++ {
		s := groupStart(g)
		size := im.groupEnd(g) - s
		used := im.groupUsed(g)
		meta := s
		if hasSuper(g) {
			meta += 1 + im.gdtBlocks
		}
		// Block bitmap: used blocks are a prefix; bits past the group's end
		// are set, as e2fsck expects.
		clear(bitmap)
		setBits(bitmap, 0, used)
		setBits(bitmap, size, blocksPerGroup)
		if err := w.write(bitmap, meta, false); err != nil {
			return fmt.Errorf("writing block bitmap of group %d: %w", g, err)
		}
		// Inode bitmap.
		first := g*im.ipg + 1
		var iused uint32
		if last >= first {
			iused = min(last-first+1, im.ipg)
		}
		clear(bitmap)
		setBits(bitmap, 0, iused)
		setBits(bitmap, im.ipg, blockSize*8)
		if err := w.write(bitmap, meta+1, false); err != nil {
			return fmt.Errorf("writing inode bitmap of group %d: %w", g, err)
		}
		d := gdt[g*descSize:]
		le.PutUint32(d[0x00:], meta)
		le.PutUint32(d[0x04:], meta+1)
		le.PutUint32(d[0x08:], meta+2)
		le.PutUint16(d[0x0C:], uint16(size-used))
		le.PutUint16(d[0x0E:], uint16(im.ipg-iused))
		le.PutUint16(d[0x10:], uint16(dirsIn[g]))
		freeBlocks += uint64(size - used)
		freeInodes += uint64(im.ipg - iused)
	}
	sb := im.superblock(freeBlocks, freeInodes)
	for g := uint32(0); g < im.groups; g++ {
		if !hasSuper(g) {
			continue
		}
		le.PutUint16(sb[0x5A:], uint16(g))
		blk := make([]byte, blockSize)
		if g == 0 {
			copy(blk[1024:], sb)
		} else {
			copy(blk, sb)
		}
		if err := w.write(blk, groupStart(g), false); err != nil {
			return fmt.Errorf("writing superblock of group %d: %w", g, err)
		}
		if err := w.write(gdt, groupStart(g)+1, false); err != nil {
			return fmt.Errorf("writing group descriptors of group %d: %w", g, err)
		}
	}
	return nil
}

// setBits sets bits [from, to) of b.
func setBits(b []byte, from, to uint32) {
	for i := from; i < to && i < uint32(len(b))*8; {
		if i%8 == 0 && i+8 <= to {
			b[i/8] = 0xff
			i += 8
			continue
		}
		b[i/8] |= 1 << (i % 8)
		i++
	}
}

func (im *Image) superblock(freeBlocks, freeInodes uint64) []byte {
	le := binary.LittleEndian
	sb := make([]byte, 1024)
	t, _ := timeFields(im.opts.Time.Unix())
	le.PutUint32(sb[0x00:], im.groups*im.ipg)
	le.PutUint32(sb[0x04:], im.blocks)
	le.PutUint32(sb[0x08:], im.blocks/20) // 5% reserved for root, as mkfs
	le.PutUint32(sb[0x0C:], uint32(freeBlocks))
	le.PutUint32(sb[0x10:], uint32(freeInodes))
	le.PutUint32(sb[0x14:], 0) // first data block
	le.PutUint32(sb[0x18:], 2) // 4 KiB blocks
	le.PutUint32(sb[0x1C:], 2) // clusters = blocks
	le.PutUint32(sb[0x20:], blocksPerGroup)
	le.PutUint32(sb[0x24:], blocksPerGroup)
	le.PutUint32(sb[0x28:], im.ipg)
	le.PutUint32(sb[0x2C:], 0) // never mounted
	le.PutUint32(sb[0x30:], t)
	le.PutUint16(sb[0x34:], 0)
	le.PutUint16(sb[0x36:], 0xFFFF) // no mount-count checks
	le.PutUint16(sb[0x38:], 0xEF53)
	le.PutUint16(sb[0x3A:], 1) // clean
	le.PutUint16(sb[0x3C:], 1) // errors: continue
	le.PutUint32(sb[0x40:], t) // last check
	le.PutUint32(sb[0x4C:], 1) // dynamic revision
	le.PutUint32(sb[0x54:], firstIno)
	le.PutUint16(sb[0x58:], inodeSize)
	if im.journal != nil {
		le.PutUint32(sb[0x5C:], 0x4) // compat: has_journal
		le.PutUint32(sb[0xE0:], journalIno)
		sb[0xFD] = 1 // s_jnl_blocks holds a copy of the journal inode's i_block
		ino := make([]byte, inodeSize)
		im.putInode(ino, im.journal)
		copy(sb[0x10C:0x10C+60], ino[0x28:0x28+60])
		le.PutUint32(sb[0x10C+60:], uint32(im.journal.size>>32))
		le.PutUint32(sb[0x10C+64:], uint32(im.journal.size))
	}
	le.PutUint32(sb[0x60:], 0x2|0x40)              // incompat: filetype, extent
	le.PutUint32(sb[0x64:], 0x1|0x2|0x8|0x20|0x40) // ro_compat: sparse_super, large_file, huge_file, dir_nlink, extra_isize
	copy(sb[0x68:0x78], im.opts.UUID[:])
	copy(sb[0x78:0x88], im.opts.Label)
	copy(sb[0xEC:0xFC], im.opts.HashSeed[:])
	sb[0xFC] = 1 // half_md4, for when a kernel adds an index
	le.PutUint32(sb[0x108:], t)
	le.PutUint16(sb[0x15C:], extraIsize)
	le.PutUint16(sb[0x15E:], extraIsize)
	le.PutUint32(sb[0x160:], 1) // signed directory hash, as on x86
	return sb
}
