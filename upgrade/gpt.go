package upgrade

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
)

// Partition is a GPT entry.
type Partition struct {
	Number int    // 1-based
	Type   string // GUID, upper case
	GUID   string // PARTUUID, upper case
	Name   string
	Offset int64 // bytes from the disk's start
	Size   int64 // bytes
}

const sector = 512

// ReadGPT reads the primary GPT of a disk with 512-byte sectors.
func ReadGPT(r io.ReaderAt) ([]Partition, error) {
	hdr := make([]byte, sector)
	if _, err := r.ReadAt(hdr, sector); err != nil {
		return nil, fmt.Errorf("read the GPT header: %w", err)
	}
	if !bytes.Equal(hdr[:8], []byte("EFI PART")) {
		return nil, errors.New("the disk has no GPT (no \"EFI PART\" signature at LBA 1)")
	}
	hsize := binary.LittleEndian.Uint32(hdr[12:])
	if hsize < 92 || hsize > sector {
		return nil, fmt.Errorf("GPT header size %d is invalid", hsize)
	}
	want := binary.LittleEndian.Uint32(hdr[16:])
	h := append([]byte(nil), hdr[:hsize]...)
	binary.LittleEndian.PutUint32(h[16:], 0)
	if crc32.ChecksumIEEE(h) != want {
		return nil, errors.New("the GPT header's checksum is wrong")
	}
	lba := int64(binary.LittleEndian.Uint64(hdr[72:]))
	n := binary.LittleEndian.Uint32(hdr[80:])
	esize := binary.LittleEndian.Uint32(hdr[84:])
	if n > 1024 || esize < 128 || esize > 4096 {
		return nil, fmt.Errorf("GPT lists %d entries of %d bytes; not a disk this appliance made", n, esize)
	}
	table := make([]byte, int(n)*int(esize))
	if _, err := r.ReadAt(table, lba*sector); err != nil {
		return nil, fmt.Errorf("read the GPT entries: %w", err)
	}
	if crc32.ChecksumIEEE(table) != binary.LittleEndian.Uint32(hdr[88:]) {
		return nil, errors.New("the GPT entries' checksum is wrong")
	}
	var parts []Partition
	for i := range int(n) {
		e := table[i*int(esize):]
		typ := guid(e[0:16])
		if typ == "00000000-0000-0000-0000-000000000000" {
			continue
		}
		first, last := int64(binary.LittleEndian.Uint64(e[32:])), int64(binary.LittleEndian.Uint64(e[40:]))
		parts = append(parts, Partition{
			Number: i + 1, Type: typ, GUID: guid(e[16:32]), Name: utf16Name(e[56:128]),
			Offset: first * sector, Size: (last - first + 1) * sector,
		})
	}
	return parts, nil
}

// guid formats a GPT GUID: the first three fields are little-endian.
func guid(b []byte) string {
	return strings.ToUpper(fmt.Sprintf("%08x-%04x-%04x-%x-%x",
		binary.LittleEndian.Uint32(b[0:4]), binary.LittleEndian.Uint16(b[4:6]), binary.LittleEndian.Uint16(b[6:8]), b[8:10], b[10:16]))
}

func utf16Name(b []byte) string {
	var s []rune
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		s = append(s, rune(c))
	}
	return string(s)
}
