package deploy

import (
	"context"
	"fmt"
	"net/url"
	"sync/atomic"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/ovf/importer"
	"github.com/vmware/govmomi/vapi/library"
	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vapi/vcenter"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// A content library has no extraConfig: what deploy made is marked in the
// descriptions instead.
const libraryMark = "made by outpost deploy"

func itemMark(name string) string { return TagName + "=" + name }

// rest logs in to the vAPI endpoint (content libraries) once.
func (s *Session) rest(ctx context.Context) (*rest.Client, error) {
	if s.rc != nil {
		return s.rc, nil
	}
	rc := rest.NewClient(s.client.Client)
	if err := rc.Login(ctx, s.user); err != nil {
		return nil, fmt.Errorf("content library API at %s: %w", s.client.URL().Host, err)
	}
	s.rc = rc
	return rc, nil
}

// findLibrary returns the library named cfg.Library, or nil.
func (s *Session) findLibrary(ctx context.Context, m *library.Manager) (*library.Library, error) {
	ids, err := m.FindLibrary(ctx, library.Find{Name: s.cfg.Library})
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	return m.GetLibraryByID(ctx, ids[0])
}

// findItem returns the library item named name, or nil; an item of that
// name that deploy did not make is an error.
func (s *Session) findItem(ctx context.Context, m *library.Manager, lib *library.Library, name string) (*library.Item, error) {
	ids, err := m.FindLibraryItems(ctx, library.FindItem{LibraryID: lib.ID, Name: name})
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	it, err := m.GetLibraryItem(ctx, ids[0])
	if err != nil {
		return nil, err
	}
	if it.Description == nil || *it.Description != itemMark(s.cfg.Name) {
		return nil, fmt.Errorf("library %s has an item %s that outpost deploy did not make for %s; remove or rename it", lib.Name, name, s.cfg.Name)
	}
	return it, nil
}

// planLibrary says whether the library item exists with its files.
func (s *Session) planLibrary(ctx context.Context, p *Plan) error {
	if s.api != APIvCenter {
		return fmt.Errorf("--library %s: a standalone ESXi host has no content library; deploy without --library, or to vCenter", s.cfg.Library)
	}
	p.Library = s.cfg.Library
	rc, err := s.rest(ctx)
	if err != nil {
		return err
	}
	m := library.NewManager(rc)
	lib, err := s.findLibrary(ctx, m)
	if err != nil || lib == nil {
		return err
	}
	it, err := s.findItem(ctx, m, lib, p.Template)
	if err != nil || it == nil {
		return err
	}
	files, err := m.ListLibraryItemFiles(ctx, it.ID)
	if err != nil {
		return err
	}
	p.TemplateExists = len(files) > 0
	return nil
}

// libraryItem finds or makes the library and its item, and uploads the OVA
// into the item: the one upload. It returns the item's ID.
func (s *Session) libraryItem(ctx context.Context, p *Plan, res *Result) (string, error) {
	rc, err := s.rest(ctx)
	if err != nil {
		return "", err
	}
	m := library.NewManager(rc)
	lib, err := s.findLibrary(ctx, m)
	if err != nil {
		return "", fmt.Errorf("library %s: %w", s.cfg.Library, err)
	}
	if lib == nil {
		s.cfg.logf("library %s: creating on %s\n", s.cfg.Library, s.datastores[0].Name())
		mark := libraryMark
		id, err := m.CreateLibrary(ctx, library.Library{
			Name: s.cfg.Library, Type: "LOCAL", Description: &mark,
			Storage: []library.StorageBacking{{DatastoreID: s.datastores[0].Reference().Value, Type: "DATASTORE"}},
		})
		if err != nil {
			return "", fmt.Errorf("creating library %s: %w", s.cfg.Library, err)
		}
		if lib, err = m.GetLibraryByID(ctx, id); err != nil {
			return "", err
		}
	}
	it, err := s.findItem(ctx, m, lib, p.Template)
	if err != nil {
		return "", err
	}
	if it != nil && p.TemplateExists {
		return it.ID, nil
	}
	id := ""
	if it != nil {
		id = it.ID // an interrupted upload: fill the same item
	} else {
		mark := itemMark(s.cfg.Name)
		if id, err = m.CreateLibraryItem(ctx, library.Item{Name: p.Template, Type: library.ItemTypeOVF, LibraryID: lib.ID, Description: &mark}); err != nil {
			return "", fmt.Errorf("creating library item %s/%s: %w", lib.Name, p.Template, err)
		}
	}

	s.cfg.logf("%s/%s: uploading %s\n", lib.Name, p.Template, ovaName(s.cfg.OVA))
	var n atomic.Int64
	archive := countingArchive{&importer.TapeArchive{Path: s.cfg.OVA, Opener: ovaOpener(s.cfg.OVA)}, &n}
	session, err := m.CreateLibraryItemUpdateSession(ctx, library.Session{LibraryItemID: id})
	if err != nil {
		return "", err
	}
	upload := func(pattern string) error {
		f, size, err := archive.Open(pattern)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", ovaName(s.cfg.OVA), pattern, err)
		}
		defer f.Close()
		name := pattern
		if e, ok := f.(*countingReader); ok {
			if te, ok := e.ReadCloser.(*importer.TapeArchiveEntry); ok {
				name = te.Name
			}
		} else if te, ok := f.(*importer.TapeArchiveEntry); ok {
			name = te.Name
		}
		up, err := m.AddLibraryItemFile(ctx, session, library.UpdateFile{Name: name, SourceType: "PUSH", Size: size})
		if err != nil {
			return err
		}
		u, err := url.Parse(up.UploadEndpoint.URI)
		if err != nil {
			return err
		}
		param := soap.DefaultUpload
		param.ContentLength = size
		return rc.Upload(ctx, f, u, &param)
	}
	env, err := s.descriptor()
	if err == nil {
		err = upload("*.ovf")
	}
	if err == nil {
		for _, r := range env.References {
			if err = upload(r.Href); err != nil {
				break
			}
		}
	}
	res.UploadedBytes += n.Load()
	if err != nil {
		_ = m.DeleteLibraryItemUpdateSession(ctx, session)
		return "", fmt.Errorf("uploading %s into library %s: %w", ovaName(s.cfg.OVA), lib.Name, err)
	}
	if err := m.CompleteLibraryItemUpdateSession(ctx, session); err != nil {
		return "", fmt.Errorf("completing the upload into library %s: %w", lib.Name, err)
	}
	s.cfg.logf("%s/%s: uploaded %d bytes\n", lib.Name, p.Template, n.Load())
	return id, nil
}

// deployItem makes VM i from the library item, with its properties, and
// tags it at once so that an interrupted run finds it.
func (s *Session) deployItem(ctx context.Context, item string, i int, v VMPlan) (*object.VirtualMachine, error) {
	rc, err := s.rest(ctx)
	if err != nil {
		return nil, err
	}
	env, err := s.descriptor()
	if err != nil {
		return nil, err
	}
	d := vcenter.Deploy{
		DeploymentSpec: vcenter.DeploymentSpec{
			Name:                v.Name,
			AcceptAllEULA:       true,
			DefaultDatastoreID:  s.datastores[i%len(s.datastores)].Reference().Value,
			StorageProvisioning: string(types.OvfCreateImportSpecParamsDiskProvisioningTypeThin),
		},
		Target: vcenter.Target{ResourcePoolID: s.pool.Reference().Value, FolderID: s.folder.Reference().Value},
	}
	if len(s.hosts) > 0 {
		d.Target.HostID = s.hosts[i%len(s.hosts)].Reference().Value
	}
	if env.Network != nil {
		for _, nw := range env.Network.Networks {
			d.NetworkMappings = append(d.NetworkMappings, vcenter.NetworkMapping{Key: nw.Name, Value: s.network.Reference().Value})
		}
	}
	pp := vcenter.AdditionalParams{Class: vcenter.ClassPropertyParams, Type: vcenter.TypePropertyParams}
	for _, k := range sortedKeys(v.props) {
		pp.Properties = append(pp.Properties, vcenter.Property{ID: k, Value: v.props[k]})
	}
	d.AdditionalParams = []vcenter.AdditionalParams{pp}
	ref, err := vcenter.NewManager(rc).DeployLibraryItem(ctx, item, d)
	if err != nil {
		return nil, fmt.Errorf("deploying from library %s: %w", s.cfg.Library, err)
	}
	vm := object.NewVirtualMachine(s.client.Client, *ref)
	t, err := vm.Reconfigure(ctx, types.VirtualMachineConfigSpec{ExtraConfig: tag(RoleConnector, s.cfg.Name)})
	if err == nil {
		err = t.Wait(ctx)
	}
	return vm, err
}

// destroyLibrary removes the item deploy made for the name, and the library
// too when deploy made it and it is left empty.
func (s *Session) destroyLibrary(ctx context.Context) ([]string, error) {
	rc, err := s.rest(ctx)
	if err != nil {
		return nil, err
	}
	m := library.NewManager(rc)
	lib, err := s.findLibrary(ctx, m)
	if err != nil || lib == nil {
		return nil, err
	}
	var gone []string
	it, err := s.findItem(ctx, m, lib, TemplateName(s.cfg.Name))
	if err != nil {
		return nil, err
	}
	if it != nil {
		s.cfg.logf("library %s: removing %s\n", lib.Name, it.Name)
		if err := m.DeleteLibraryItem(ctx, it); err != nil {
			return nil, fmt.Errorf("removing library item %s/%s: %w", lib.Name, it.Name, err)
		}
		gone = append(gone, "library item "+lib.Name+"/"+it.Name)
	}
	if lib.Description != nil && *lib.Description == libraryMark {
		items, err := m.GetLibraryItems(ctx, lib.ID)
		if err != nil {
			return gone, err
		}
		if len(items) == 0 {
			s.cfg.logf("library %s: removing it, now empty\n", lib.Name)
			if err := m.DeleteLibrary(ctx, lib); err != nil {
				return gone, fmt.Errorf("removing library %s: %w", lib.Name, err)
			}
			gone = append(gone, "library "+lib.Name)
		}
	}
	return gone, nil
}
