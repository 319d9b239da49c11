package vmdk_test

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"io"
	"strings"
	"testing"

	"github.com/outpost-appliance/outpost/disk"
	"github.com/outpost-appliance/outpost/disk/disktest"
	"github.com/outpost-appliance/outpost/disk/vmdk"
)

// TestStreamLayout walks the file the way a streaming importer (ESXi's OVF
// import) reads it, front to back, and checks what qemu-img and libvmdk do
// not: version 3 with markers, every record 512-byte aligned, grains in
// increasing LBA order, each grain table after its grains, then the grain
// directory, the footer and the end-of-stream marker.
func TestStreamLayout(t *testing.T) {
	spec := disktest.Spec{Name: "layout", Size: 70<<20 + 4096, Seed: 21, Regions: []disktest.Region{
		{Off: 0, Len: 100 << 10, Kind: disktest.Text}, {Off: 33 << 20, Len: 2 << 20, Kind: disktest.Random},
		{Off: 40 << 20, Len: 1 << 20, Kind: disktest.Zeros}, {Off: 70 << 20, Len: 4096, Kind: disktest.Text}}}
	raw := disktest.MakeRaw(t, spec)
	img, err := disk.OpenRaw(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	var out bytes.Buffer
	info, err := vmdk.Write(&out, img, vmdk.Options{AdapterType: "ide", HWVersion: 7, ExtentName: "x.vmdk"})
	if err != nil {
		t.Fatal(err)
	}
	f := out.Bytes()
	le := binary.LittleEndian
	if len(f)%512 != 0 {
		t.Fatalf("file size %d is not a multiple of 512", len(f))
	}
	hdr := f[:512]
	if string(hdr[:4]) != "KDMV" || le.Uint32(hdr[4:]) != 3 || le.Uint32(hdr[8:]) != 0x30001 ||
		le.Uint64(hdr[56:]) != ^uint64(0) || le.Uint16(hdr[77:]) != 1 || le.Uint64(hdr[20:]) != 128 {
		t.Fatalf("header: magic %q version %d flags %#x gdOffset %#x compress %d grain %d",
			hdr[:4], le.Uint32(hdr[4:]), le.Uint32(hdr[8:]), le.Uint64(hdr[56:]), le.Uint16(hdr[77:]), le.Uint64(hdr[20:]))
	}
	capSectors := le.Uint64(hdr[12:])
	if capSectors*512 != uint64(info.Capacity) || info.Capacity != 70<<20+64<<10 {
		t.Errorf("capacity %d sectors, Info %d bytes", capSectors, info.Capacity)
	}
	desc := string(f[512*le.Uint64(hdr[28:]) : 512*(le.Uint64(hdr[28:])+le.Uint64(hdr[36:]))])
	for _, w := range []string{`createType="streamOptimized"`, "RW 143488 SPARSE \"x.vmdk\"",
		`ddb.adapterType = "ide"`, `ddb.virtualHWVersion = "7"`, "parentCID=ffffffff"} {
		if !strings.Contains(desc, w) {
			t.Errorf("descriptor lacks %s:\n%s", w, desc)
		}
	}

	// Walk the records after the header area.
	pos := int(512 * le.Uint64(hdr[64:]))
	lastLBA, grains, gts := int64(-1), 0, 0
	gtOf := map[int64]int{} // grain table index -> sector of its table
	var gdSector int
	for done := false; !done; {
		m := f[pos : pos+512]
		val, size := le.Uint64(m), le.Uint32(m[8:])
		if size != 0 { // grain marker
			lba := int64(val)
			if lba <= lastLBA || lba%128 != 0 {
				t.Fatalf("grain at sector %d: LBA %d after %d", pos/512, lba, lastLBA)
			}
			zr, err := zlib.NewReader(bytes.NewReader(m[12 : 12+size]))
			if err != nil {
				t.Fatalf("grain at sector %d: %v", pos/512, err)
			}
			data, err := io.ReadAll(zr)
			want := make([]byte, 65536)
			disk.ReadGrain(img, want, lba*512)
			if err != nil || !bytes.Equal(data, want) {
				t.Fatalf("grain at LBA %d does not inflate to the disk's data (%v)", lba, err)
			}
			lastLBA = lba
			grains++
			pos += (12 + int(size) + 511) / 512 * 512
			continue
		}
		switch typ := le.Uint32(m[12:]); typ {
		case 1: // grain table
			if val != 4 {
				t.Fatalf("GT marker at sector %d: %d sectors", pos/512, val)
			}
			gtOf[lastLBA/128/512] = pos/512 + 1
			gts++
		case 2:
			gdSector = pos/512 + 1
		case 3:
			footer := f[pos+512 : pos+1024]
			if !bytes.Equal(footer[:56], hdr[:56]) || !bytes.Equal(footer[64:], hdr[64:]) || le.Uint64(footer[56:]) != uint64(gdSector) {
				t.Errorf("footer differs from the header other than gdOffset %d", gdSector)
			}
		case 0:
			if val != 0 || pos+512 != len(f) || !bytes.Equal(m, make([]byte, 512)) {
				t.Errorf("end-of-stream marker at sector %d of %d", pos/512, len(f)/512)
			}
			done = true
		default:
			t.Fatalf("unknown marker type %d at sector %d", typ, pos/512)
		}
		pos += 512 + int(val)*512
	}
	// 100 KiB text (2 grains) + 2 MiB random (32) + 4 KiB tail (1); zeros skipped.
	if grains != 35 || info.Populated != 35*65536 {
		t.Errorf("%d grains stored, Populated %d; want 35", grains, info.Populated)
	}
	// Grain tables for the spans of 32 MiB holding data: 0, 1 (33 MiB) and 2 (70 MiB).
	gd := f[gdSector*512:]
	for i := range 3 {
		if got := int(le.Uint32(gd[i*4:])); got != gtOf[int64(i)] || got == 0 {
			t.Errorf("GD entry %d = %d, want the table written at %d", i, got, gtOf[int64(i)])
		}
	}
	if gts != 3 {
		t.Errorf("%d grain tables written, want 3", gts)
	}
}
