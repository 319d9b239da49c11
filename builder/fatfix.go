package builder

import (
	"encoding/binary"
	"fmt"
	"time"
)

// fixFAT32 repairs and normalizes the FAT32 filesystem go-diskfs v1.9.4
// wrote at start: it points the '..' entry of the root's subdirectories at
// the root's own cluster number instead of 0, which fsck.vfat reports as an
// error; it leaves the FSInfo free-cluster count uninitialized; and it stamps
// '.' and '..' entries with time.Now. fixFAT32 sets every directory entry's
// times to epoch, fixes '..' and fills in FSInfo.
func fixFAT32(d *diskFile, start int64, epoch time.Time, volumeID uint32) error {
	le := binary.LittleEndian
	bs := make([]byte, 512)
	if _, err := d.ReadAt(bs, start); err != nil {
		return err
	}
	bps := int64(le.Uint16(bs[0x0B:]))
	spc := int64(bs[0x0D])
	reserved := int64(le.Uint16(bs[0x0E:]))
	nfats := int64(bs[0x10])
	totalSectors := int64(le.Uint32(bs[0x20:]))
	fatSectors := int64(le.Uint32(bs[0x24:]))
	rootCluster := le.Uint32(bs[0x2C:])
	fsInfo := int64(le.Uint16(bs[0x30:]))
	if bps != sectorSize || spc == 0 || nfats == 0 {
		return fmt.Errorf("unexpected FAT32 boot sector (%d bytes per sector, %d sectors per cluster)", bps, spc)
	}
	clusterBytes := bps * spc
	dataStart := start + (reserved+nfats*fatSectors)*bps
	clusters := (totalSectors - reserved - nfats*fatSectors) / spc

	// Volume ID: go-diskfs writes 0 for reproducible filesystems.
	for _, sector := range []int64{0, 6} {
		var b [4]byte
		le.PutUint32(b[:], volumeID)
		if _, err := d.WriteAt(b[:], start+sector*bps+0x43); err != nil {
			return err
		}
	}

	fat := make([]byte, fatSectors*bps)
	if _, err := d.ReadAt(fat, start+reserved*bps); err != nil {
		return err
	}
	next := func(c uint32) uint32 { return le.Uint32(fat[4*int64(c):]) & 0x0FFFFFFF }
	chain := func(c uint32) []uint32 {
		var cs []uint32
		for c >= 2 && c < 0x0FFFFFF8 && int64(len(cs)) <= clusters {
			cs = append(cs, c)
			c = next(c)
		}
		return cs
	}
	off := func(c uint32) int64 { return dataStart + int64(c-2)*clusterBytes }

	dosTime, dosDate := toDOS(epoch)
	var walk func(dir uint32, parent uint32, depth int) error
	walk = func(dir, parent uint32, depth int) error {
		if depth > 16 {
			return fmt.Errorf("directory tree deeper than 16 levels")
		}
		buf := make([]byte, clusterBytes)
		for _, c := range chain(dir) {
			if _, err := d.ReadAt(buf, off(c)); err != nil {
				return err
			}
			for i := int64(0); i < clusterBytes; i += 32 {
				e := buf[i : i+32]
				if e[0] == 0 {
					break
				}
				if e[0] == 0xE5 || e[0x0B] == 0x0F {
					continue // deleted or long-name slot
				}
				e[0x0D] = 0
				le.PutUint16(e[0x0E:], dosTime)
				le.PutUint16(e[0x10:], dosDate)
				le.PutUint16(e[0x12:], dosDate)
				le.PutUint16(e[0x16:], dosTime)
				le.PutUint16(e[0x18:], dosDate)
				name := string(e[0:11])
				target := uint32(le.Uint16(e[0x14:]))<<16 | uint32(le.Uint16(e[0x1A:]))
				switch {
				case name == "..         ":
					want := parent
					if parent == rootCluster {
						want = 0 // the root is always cluster 0 in '..'
					}
					le.PutUint16(e[0x14:], uint16(want>>16))
					le.PutUint16(e[0x1A:], uint16(want))
				case name == ".          ", e[0x0B]&0x10 == 0:
				default:
					if err := walk(target, dir, depth+1); err != nil {
						return err
					}
				}
			}
			if _, err := d.WriteAt(buf, off(c)); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(rootCluster, 0, 0); err != nil {
		return fmt.Errorf("EFI system partition: %w", err)
	}

	free, first := uint32(0), uint32(0xFFFFFFFF)
	for c := uint32(2); int64(c) < clusters+2; c++ {
		if next(c) == 0 {
			free++
			if first == 0xFFFFFFFF {
				first = c
			}
		}
	}
	for _, s := range []int64{fsInfo, fsInfo + 6} {
		info := make([]byte, 512)
		if _, err := d.ReadAt(info, start+s*bps); err != nil {
			return err
		}
		if le.Uint32(info[0:]) != 0x41615252 {
			continue
		}
		le.PutUint32(info[0x1E8:], free)
		le.PutUint32(info[0x1EC:], first)
		if _, err := d.WriteAt(info, start+s*bps); err != nil {
			return err
		}
	}
	return nil
}

// toDOS converts t to FAT's local-time date and time fields (2 s
// resolution, 1980–2107); earlier times become 1980-01-01.
func toDOS(t time.Time) (tm, date uint16) {
	t = t.UTC()
	if t.Year() < 1980 {
		t = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	tm = uint16(t.Hour()<<11 | t.Minute()<<5 | t.Second()/2)
	date = uint16((t.Year()-1980)<<9 | int(t.Month())<<5 | t.Day())
	return tm, date
}
