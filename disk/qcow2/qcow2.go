// Package qcow2 writes a disk.Image as a qcow2 version 3 image (QEMU's
// docs/interop/qcow2.txt): 64 KiB clusters, 16-bit refcounts, no backing
// file, no compression, no snapshots.
//
// The layout is computed before the first byte is written, so the image
// streams front to back into any io.Writer:
//
//	header | refcount table | refcount blocks | L1 table | L2 tables | data clusters
//
// Only clusters that hold non-zero data are stored: holes cost nothing, and
// all-zero clusters inside data regions are found by a first read pass (which
// the second, writing pass then finds in the page cache). Every stored
// cluster has refcount 1, and L1/L2 entries carry the COPIED flag, as
// `qemu-img check` expects. The output depends only on the disk contents.
//
// It does not read qcow2 images; tests use qemu-img for that.
package qcow2

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/outpost-appliance/outpost/disk"
)

const (
	clusterBits  = 16
	clusterSize  = 1 << clusterBits // equals disk.GrainSize
	l2Entries    = clusterSize / 8
	refcountBits = 16                             // refcount_order 4
	rbEntries    = clusterSize * 8 / refcountBits // refcounts per refcount block
	copied       = uint64(1) << 63                // QCOW_OFLAG_COPIED: refcount is exactly 1
	headerLength = 104                            // version 3 header without optional fields
	chunk        = 16 * clusterSize               // read and write unit for data
)

// Options tune the writer. There are none yet: the type keeps qcow2.Write
// the same shape as every other format's (disk.WriteFunc).
type Options struct{}

// Write writes img to w as qcow2 v3 whose virtual size is img.Size()
// rounded up to 64 KiB. img must not change while it is written. On error,
// what was written to w is incomplete and must be discarded.
func Write(w io.Writer, img disk.Image, _ Options) (disk.Info, error) {
	info, err := write(w, img)
	if err != nil {
		return info, fmt.Errorf("qcow2: %w", err)
	}
	return info, nil
}

func write(w io.Writer, img disk.Image) (disk.Info, error) {
	capacity, err := disk.Capacity(img)
	if err != nil {
		return disk.Info{}, err
	}
	info := disk.Info{Capacity: capacity}
	exts, err := img.Extents()
	if err != nil {
		return info, fmt.Errorf("list data regions: %w", err)
	}
	ranges := disk.Grains(exts, capacity)
	nClusters := capacity / clusterSize

	// Pass 1: which clusters hold data. Reads go in chunks of up to
	// 1 MiB: fewer system calls than one per cluster.
	used := make([]uint64, (nClusters+63)/64)
	buf := make([]byte, chunk)
	var nData int64
	for _, r := range ranges {
		for off := r.Off; off < r.End(); off += chunk {
			b := buf[:min(chunk, r.End()-off)]
			if err := disk.ReadGrain(img, b, off); err != nil {
				return info, err
			}
			for i := 0; i < len(b); i += clusterSize {
				if !disk.IsZero(b[i : i+clusterSize]) {
					c := (off + int64(i)) / clusterSize
					used[c/64] |= 1 << (c % 64)
					nData++
				}
			}
		}
	}
	isUsed := func(c int64) bool { return used[c/64]&(1<<(c%64)) != 0 }

	l1Size := (nClusters + l2Entries - 1) / l2Entries
	l2Used := make([]bool, l1Size)
	var nL2 int64
	for c := int64(0); c < nClusters; c++ {
		if isUsed(c) && !l2Used[c/l2Entries] {
			l2Used[c/l2Entries] = true
			nL2++
		}
	}
	l1Clusters := ceil(l1Size*8, clusterSize)
	// The refcount structures count themselves: grow until they fit.
	var rtClusters, rbClusters, total int64 = 1, 1, 0
	for {
		total = 1 + rtClusters + rbClusters + l1Clusters + nL2 + nData
		rb := ceil(total, rbEntries)
		rt := ceil(rb*8, clusterSize)
		if rb == rbClusters && rt == rtClusters {
			break
		}
		rbClusters, rtClusters = max(rb, rbClusters), max(rt, rtClusters)
	}
	rtOff := int64(1)
	rbOff := rtOff + rtClusters
	l1Off := rbOff + rbClusters
	l2Off := l1Off + l1Clusters
	dataOff := l2Off + nL2
	info.Populated = nData * clusterSize

	bw := bufio.NewWriterSize(w, 1<<20)
	be := binary.BigEndian // qcow2 is big-endian throughout
	cl := make([]byte, clusterSize)

	// Header.
	be.PutUint32(cl[0:], 0x514649fb) // "QFI\xfb"
	be.PutUint32(cl[4:], 3)
	be.PutUint32(cl[20:], clusterBits)
	be.PutUint64(cl[24:], uint64(capacity))
	be.PutUint32(cl[36:], uint32(l1Size))
	be.PutUint64(cl[40:], uint64(l1Off*clusterSize))
	be.PutUint64(cl[48:], uint64(rtOff*clusterSize))
	be.PutUint32(cl[56:], uint32(rtClusters))
	be.PutUint32(cl[96:], 4) // refcount_order: 16-bit refcounts
	be.PutUint32(cl[100:], headerLength)
	// Header extensions end at once: bytes 104..111 stay zero.
	bw.Write(cl)

	// Refcount table: rbClusters blocks, the rest of its clusters zero.
	for i := int64(0); i < rtClusters*clusterSize/8; i++ {
		var e uint64
		if i < rbClusters {
			e = uint64((rbOff + i) * clusterSize)
		}
		putEntry(bw, e)
	}
	// Refcount blocks: clusters 0..total-1 are used once.
	for i := int64(0); i < rbClusters*rbEntries; i++ {
		var rc [2]byte
		if i < total {
			rc[1] = 1 // big-endian 1
		}
		bw.Write(rc[:])
	}
	// L1 table.
	next := l2Off
	for i := int64(0); i < l1Clusters*clusterSize/8; i++ {
		var e uint64
		if i < l1Size && l2Used[i] {
			e = uint64(next*clusterSize) | copied
			next++
		}
		putEntry(bw, e)
	}
	// L2 tables, in L1 order; data clusters in virtual order follow them.
	next = dataOff
	for t := int64(0); t < l1Size; t++ {
		if !l2Used[t] {
			continue
		}
		for c := t * l2Entries; c < (t+1)*l2Entries; c++ {
			var e uint64
			if c < nClusters && isUsed(c) {
				e = uint64(next*clusterSize) | copied
				next++
			}
			putEntry(bw, e)
		}
	}
	if err := bw.Flush(); err != nil {
		return info, fmt.Errorf("write: %w", err)
	}
	// Pass 2: data, in runs of used clusters of up to 1 MiB.
	for _, r := range ranges {
		for off := r.Off; off < r.End(); {
			if !isUsed(off / clusterSize) {
				off += clusterSize
				continue
			}
			n := int64(clusterSize)
			for n < chunk && off+n < r.End() && isUsed((off+n)/clusterSize) {
				n += clusterSize
			}
			if err := disk.ReadGrain(img, buf[:n], off); err != nil {
				return info, err
			}
			if _, err := w.Write(buf[:n]); err != nil {
				return info, fmt.Errorf("write: %w", err)
			}
			off += n
		}
	}
	info.Written = total * clusterSize
	return info, nil
}

func putEntry(w *bufio.Writer, e uint64) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], e)
	w.Write(b[:])
}

func ceil(a, b int64) int64 { return (a + b - 1) / b }
