package imagebuild

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// ErrNotRawDisk is returned by Pack for a --disk that is not a raw GPT disk.
var ErrNotRawDisk = errors.New("not a raw GPT disk image")

// CheckRawDisk reports whether the file at path is a raw disk that Pack can
// wrap: a regular file whose size is a multiple of 512 bytes, which is not
// another disk format (qcow2, VMDK, VHD, VHDX: recognised by their magic
// bytes, and named with the qemu-img command that converts them), and which
// starts with a protective MBR and a GPT header whose CRC is right — what
// every appliance disk has, and what random data or a filesystem image
// lacks.
func CheckRawDisk(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("disk %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("disk %s: %w: not a regular file", path, ErrNotRawDisk)
	}
	head := make([]byte, 1024)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return fmt.Errorf("disk %s: %w", path, err)
	}
	head = head[:n]
	var tail []byte
	if fi.Size() >= 512 {
		tail = make([]byte, 512)
		if _, err := f.ReadAt(tail, fi.Size()-512); err != nil {
			return fmt.Errorf("disk %s: %w", path, err)
		}
	}
	if format := otherFormat(head, tail); format != "" {
		return fmt.Errorf("disk %s: %w: it is a %s image; convert it first: qemu-img convert -O raw %s DISK.raw", path, ErrNotRawDisk, format, path)
	}
	if fi.Size() == 0 || fi.Size()%512 != 0 {
		return fmt.Errorf("disk %s: %w: its size, %d bytes, is not a non-zero multiple of 512", path, ErrNotRawDisk, fi.Size())
	}
	if why := gptProblem(head); why != "" {
		return fmt.Errorf("disk %s: %w: %s; give a disk made by 'outpost image build' (or another GPT disk)", path, ErrNotRawDisk, why)
	}
	return nil
}

// otherFormat names the disk format whose magic head (the first bytes) or
// tail (the last 512) holds, or "".
func otherFormat(head, tail []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte("QFI\xfb")):
		return "qcow2"
	case bytes.HasPrefix(head, []byte("KDMV")):
		return "VMDK (sparse extent)"
	case bytes.HasPrefix(head, []byte("COWD")):
		return "VMDK (ESX sparse extent)"
	case bytes.HasPrefix(head, []byte("# Disk DescriptorFile")):
		return "VMDK descriptor"
	case bytes.HasPrefix(head, []byte("vhdxfile")):
		return "VHDX"
	case bytes.HasPrefix(head, []byte("conectix")), bytes.HasPrefix(tail, []byte("conectix")):
		// A dynamic VHD starts with a copy of its footer; a fixed VHD is
		// raw data with the footer at the end.
		return "VHD"
	}
	return ""
}

// gptProblem says what is missing from a GPT disk's first two sectors, or "".
func gptProblem(head []byte) string {
	if len(head) < 1024 {
		return "it is smaller than a partition table"
	}
	if head[510] != 0x55 || head[511] != 0xAA {
		return "it has no partition table (no MBR boot signature)"
	}
	protective := false
	for i := 0; i < 4; i++ {
		if head[446+16*i+4] == 0xEE {
			protective = true
		}
	}
	if !protective {
		return "it has an MBR but no protective entry for a GPT (an MBR-partitioned or BIOS disk; the appliance boots UEFI from GPT)"
	}
	h := head[512:1024]
	if !bytes.Equal(h[:8], []byte("EFI PART")) {
		return "its protective MBR is not followed by a GPT header"
	}
	size := binary.LittleEndian.Uint32(h[12:16])
	if size < 92 || size > 512 {
		return "its GPT header is damaged (header size)"
	}
	hdr := bytes.Clone(h[:size])
	want := binary.LittleEndian.Uint32(hdr[16:20])
	clear(hdr[16:20])
	if crc32.ChecksumIEEE(hdr) != want {
		return "its GPT header is damaged (CRC mismatch)"
	}
	return ""
}
