package deploy

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"

	"github.com/vmware/govmomi/ovf"
	"github.com/vmware/govmomi/ovf/importer"

	"github.com/outpost-appliance/outpost/appliance"
)

// ErrNotAppliance is returned for an OVA that declares no outpost
// properties.
var ErrNotAppliance = errors.New("not an outpost appliance")

// readDescriptor returns the OVA's parsed descriptor and its raw text.
func readDescriptor(path string) (*ovf.Envelope, []byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, nil, fmt.Errorf("%s: no .ovf descriptor in the archive (is it an OVA?)", path)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		if strings.HasSuffix(h.Name, ".ovf") {
			b, err := io.ReadAll(io.LimitReader(tr, 16<<20))
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", path, err)
			}
			env, err := importer.ReadEnvelope(b)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", path, err)
			}
			return env, b, nil
		}
	}
}

// checkAppliance refuses a descriptor that does not declare the
// provisioning key property.
func checkAppliance(path string, env *ovf.Envelope) error {
	if env.VirtualSystem != nil {
		for _, p := range env.VirtualSystem.Product {
			for _, prop := range p.Property {
				if prop.Key == appliance.PropProvisionKey {
					return nil
				}
			}
		}
	}
	return fmt.Errorf("%s: %w: its OVF declares no %s property; deploy an OVA written by 'outpost image build'", path, ErrNotAppliance, appliance.PropProvisionKey)
}

// countingArchive counts the bytes read from the OVA's disk files, that is
// the bytes uploaded.
type countingArchive struct {
	importer.Archive
	n *atomic.Int64
}

func (a countingArchive) Open(name string) (io.ReadCloser, int64, error) {
	rc, size, err := a.Archive.Open(name)
	if err != nil || strings.HasSuffix(name, ".ovf") || strings.HasSuffix(name, ".mf") {
		return rc, size, err
	}
	return &countingReader{rc, a.n}, size, nil
}

type countingReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.n.Add(int64(n))
	return n, err
}
