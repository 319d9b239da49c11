package ova

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/vmware/govmomi/ovf"
)

// ErrNoDescriptor means an archive holds no .ovf member: it is not an OVA.
var ErrNoDescriptor = errors.New("no .ovf descriptor in the archive (is it an OVA?)")

// maxDescriptor bounds how much of an .ovf member is read.
const maxDescriptor = 16 << 20

// ReadDescriptor reads an OVA from r up to its .ovf member and returns the
// descriptor parsed with govmomi's ovf package (as govc and vSphere read
// it) and its text. Only the archive's members before the descriptor are
// read, which in an OVA are none.
func ReadDescriptor(r io.Reader) (*ovf.Envelope, []byte, error) {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, nil, ErrNoDescriptor
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%w (is it an OVA?)", err)
		}
		if !strings.HasSuffix(h.Name, ".ovf") {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(tr, maxDescriptor))
		if err != nil {
			return nil, nil, err
		}
		env, err := ovf.Unmarshal(bytes.NewReader(b))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", h.Name, err)
		}
		return env, b, nil
	}
}
