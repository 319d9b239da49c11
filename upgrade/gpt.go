package upgrade

import (
	"fmt"
	"os"
	"strings"

	"github.com/diskfs/go-diskfs/partition/gpt"
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

// ReadGPT reads the GPT of a disk with 512-byte sectors, with go-diskfs
// (as the builder writes it and imagebuild reads it).
func ReadGPT(f *os.File) ([]Partition, error) {
	t, err := gpt.Read(f, 512, 512)
	if err != nil {
		return nil, fmt.Errorf("read the GPT: %w", err)
	}
	var parts []Partition
	for _, p := range t.Partitions {
		if p == nil || p.Type == gpt.Unused || p.End <= p.Start {
			continue
		}
		parts = append(parts, Partition{Number: p.Index, Type: strings.ToUpper(string(p.Type)), GUID: strings.ToUpper(p.GUID),
			Name: p.Name, Offset: p.GetStart(), Size: p.GetSize()})
	}
	return parts, nil
}
