package builder

import (
	"encoding/binary"
	"fmt"
	"os"
	"time"

	"github.com/google/uuid"
)

// normalizeExt4 removes what go-diskfs v1.9.4 leaves non-reproducible in an
// ext4 filesystem it created: it stamps the superblock, the reserved inodes
// (root, journal, resize, lost+found) and every inode's change time with
// time.Now, and draws the directory hash seed from crypto/rand. Params only
// lets callers choose the filesystem UUID. This pass rewrites those fields
// in place: superblock times and hash seed (primary and backups) become the
// epoch and a seed derived from the build inputs; in every used inode the
// access, change and creation times become its modification time, clamped
// to the epoch, and the reserved inodes' times become the epoch.
//
// It relies on go-diskfs's default features: no metadata_csum (inodes and
// superblocks carry no checksums to recompute) and no dir_index (the hash
// seed indexes no directory yet). It refuses filesystems with other
// features rather than corrupt them.
func normalizeExt4(f *os.File, start int64, epoch time.Time, hashSeed uuid.UUID) error {
	sb := make([]byte, 1024)
	if _, err := f.ReadAt(sb, start+1024); err != nil {
		return err
	}
	le := binary.LittleEndian
	if le.Uint16(sb[0x38:]) != 0xEF53 {
		return fmt.Errorf("no ext4 superblock at offset %d", start+1024)
	}
	const (
		compatDirIndex     = 0x20
		incompat64Bit      = 0x80
		roCompatMetaCsum   = 0x400
		roCompatSparseSupr = 0x1
		bgInodeUninit      = 0x1
	)
	if le.Uint32(sb[0x64:])&roCompatMetaCsum != 0 || le.Uint32(sb[0x5C:])&compatDirIndex != 0 {
		return fmt.Errorf("the filesystem uses metadata_csum or dir_index, which this pass cannot rewrite")
	}
	blockSize := int64(1024) << le.Uint32(sb[0x18:])
	firstDataBlock := int64(le.Uint32(sb[0x14:]))
	blocksPerGroup := int64(le.Uint32(sb[0x20:]))
	inodesPerGroup := int64(le.Uint32(sb[0x28:]))
	inodeSize := int64(le.Uint16(sb[0x58:]))
	blocks := int64(le.Uint32(sb[0x04:]))
	descSize := int64(32)
	if le.Uint32(sb[0x60:])&incompat64Bit != 0 {
		blocks |= int64(le.Uint32(sb[0x150:])) << 32
		descSize = int64(le.Uint16(sb[0xFE:]))
	}
	groups := (blocks - firstDataBlock + blocksPerGroup - 1) / blocksPerGroup
	ep := uint32(epoch.Unix())

	// Superblock copies.
	fix := func(sb []byte) {
		for _, off := range []int{0x2C, 0x30, 0x40, 0x108} {
			le.PutUint32(sb[off:], ep)
		}
		for _, off := range []int{0x274, 0x275, 0x276, 0x277} {
			sb[off] = 0
		}
		copy(sb[0xEC:0xFC], hashSeed[:])
	}
	sparse := le.Uint32(sb[0x64:])&roCompatSparseSupr != 0
	for g := int64(0); g < groups; g++ {
		if g > 0 && sparse && !hasSuperBackup(g) {
			continue
		}
		off := start + (firstDataBlock+g*blocksPerGroup)*blockSize
		if g == 0 {
			off = start + 1024
		}
		b := make([]byte, 1024)
		if _, err := f.ReadAt(b, off); err != nil {
			return err
		}
		if le.Uint16(b[0x38:]) != 0xEF53 {
			continue // go-diskfs did not write this backup
		}
		fix(b)
		if _, err := f.WriteAt(b, off); err != nil {
			return err
		}
	}

	// Inodes, group by group, as far as the highest used inode.
	gdt := make([]byte, groups*descSize)
	if _, err := f.ReadAt(gdt, start+(firstDataBlock+1)*blockSize); err != nil {
		return fmt.Errorf("reading group descriptors: %w", err)
	}
	bitmap := make([]byte, blockSize)
	for g := int64(0); g < groups; g++ {
		gd := gdt[g*descSize : (g+1)*descSize]
		if le.Uint16(gd[0x12:])&bgInodeUninit != 0 {
			continue
		}
		bitmapBlock := int64(le.Uint32(gd[0x04:]))
		table := int64(le.Uint32(gd[0x08:]))
		if descSize >= 64 {
			bitmapBlock |= int64(le.Uint32(gd[0x24:])) << 32
			table |= int64(le.Uint32(gd[0x28:])) << 32
		}
		if _, err := f.ReadAt(bitmap, start+bitmapBlock*blockSize); err != nil {
			return fmt.Errorf("reading inode bitmap of group %d: %w", g, err)
		}
		last := int64(-1)
		for i := inodesPerGroup - 1; i >= 0; i-- {
			if bitmap[i/8]&(1<<(i%8)) != 0 {
				last = i
				break
			}
		}
		if last < 0 {
			continue
		}
		inodes := make([]byte, (last+1)*inodeSize)
		if _, err := f.ReadAt(inodes, start+table*blockSize); err != nil {
			return fmt.Errorf("reading inode table of group %d: %w", g, err)
		}
		for i := int64(0); i <= last; i++ {
			if bitmap[i/8]&(1<<(i%8)) == 0 {
				continue
			}
			ino := g*inodesPerGroup + i + 1
			in := inodes[i*inodeSize : (i+1)*inodeSize]
			t := ep
			if ino > 11 {
				if m := int32(le.Uint32(in[0x10:])); int64(m) < int64(ep) {
					t = uint32(m)
				}
			}
			// go-diskfs fills the checksum fields even without
			// metadata_csum, over the times replaced here; e2fsck ignores
			// them without the feature, so clear them.
			le.PutUint16(in[0x7C:], 0)
			if inodeSize > 128 {
				le.PutUint16(in[0x82:], 0)
			}
			for _, off := range []int{0x08, 0x0C, 0x10} {
				le.PutUint32(in[off:], t)
			}
			if inodeSize > 128 && 128+int64(le.Uint16(in[0x80:])) >= 0x98 {
				le.PutUint32(in[0x84:], 0) // ctime_extra
				le.PutUint32(in[0x88:], 0) // mtime_extra
				le.PutUint32(in[0x8C:], 0) // atime_extra
				le.PutUint32(in[0x90:], t) // crtime
				le.PutUint32(in[0x94:], 0) // crtime_extra
			}
		}
		if _, err := f.WriteAt(inodes, start+table*blockSize); err != nil {
			return fmt.Errorf("writing inode table of group %d: %w", g, err)
		}
	}
	return nil
}

// hasSuperBackup reports whether group g holds a superblock backup under
// sparse_super: groups 1 and the powers of 3, 5 and 7.
func hasSuperBackup(g int64) bool {
	if g <= 1 {
		return true
	}
	for _, base := range []int64{3, 5, 7} {
		n := base
		for n < g {
			n *= base
		}
		if n == g {
			return true
		}
	}
	return false
}
