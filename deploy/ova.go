package deploy

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/vmware/govmomi/ovf"
	"github.com/vmware/govmomi/ovf/importer"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/ova"
)

// ErrNotAppliance is returned for an OVA that declares no outpost
// properties.
var ErrNotAppliance = errors.New("not an outpost appliance")

// ovaOpener opens the OVA for govmomi's importer.TapeArchive, which reads
// the archive front to back for each file it opens: a local path, or an
// http(s) URL streamed (never held in memory) through a client of its own,
// so that the vSphere session cookie and GOVC_INSECURE stay with vSphere.
func ovaOpener(path string) importer.Opener {
	if !importer.IsRemotePath(path) {
		return importer.Opener{}
	}
	u, err := url.Parse(path)
	if err != nil {
		return importer.Opener{} // Validate refused it already
	}
	return importer.Opener{Client: &vim25.Client{Client: soap.NewClient(u, false)}}
}

// ovaName is the OVA as messages show it: a URL without its password.
func ovaName(path string) string {
	if u, err := url.Parse(path); err == nil && importer.IsRemotePath(path) {
		return u.Redacted()
	}
	return path
}

// checkOVAURL is Validate's check of an --ova that is a URL.
func checkOVAURL(path string) error {
	u, err := url.Parse(path)
	if err != nil || u.Host == "" {
		return fmt.Errorf("OVA URL %q: use http(s)://HOST/PATH.ova", ovaName(path))
	}
	return nil
}

// descriptor returns the OVA's parsed descriptor, read once per session
// (a URL is fetched only as far as the descriptor).
func (s *Session) descriptor() (*ovf.Envelope, error) {
	if s.env != nil {
		return s.env, nil
	}
	path := s.cfg.OVA
	name := ovaName(path)
	f, _, err := ovaOpener(path).OpenFile(path)
	if err != nil {
		if importer.IsRemotePath(path) {
			return nil, fmt.Errorf("OVA %s: %w; check that the URL serves the OVA", name, err)
		}
		return nil, err
	}
	defer f.Close()
	env, _, err := ova.ReadDescriptor(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	s.env = env
	return env, nil
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
	return fmt.Errorf("%s: %w: its OVF declares no %s property; deploy an OVA written by 'outpost image build'", ovaName(path), ErrNotAppliance, appliance.PropProvisionKey)
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
