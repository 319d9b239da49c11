package controlplane

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/outpost-appliance/outpost/controlplane/store"
	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/release"
)

// MaxBundle is the largest release bundle accepted by a publish.
const MaxBundle = 8 << 30

// releasesDir holds the published bundles in the data directory, as
// NAME-VERSION.bundle; uploads in progress are hidden files beside them.
const releasesDir = "releases"

// noReleaseKey is the one sentence for a server that trusts no release key.
const noReleaseKey = "this control plane trusts no release key, so it cannot check a bundle's signature; restart it with 'outpost server --release-key FILE.pub' (the public key written by 'outpost releases keygen -o FILE' beside the key that signs the bundles)"

// bundleFile is where a release's bundle lives.
func (s *Service) bundleFile(r store.Release) string {
	return filepath.Join(s.ReleaseDir, r.Name+"-"+r.Version+".bundle")
}

// PublishRelease reads a bundle from body, checks it against the trusted
// release keys and records it. The bundle is written to a temporary file
// in the releases directory while it is hashed, verified from there, and
// renamed to NAME-VERSION.bundle only once it is recorded; a refused
// bundle leaves nothing behind. Publishing the same bytes again answers
// the release (and puts the file back if this server lacks it); another
// bundle with a published version is refused (exists).
func (s *Service) PublishRelease(ctx context.Context, body io.Reader) (cpapi.Release, error) {
	if len(s.ReleaseKeys) == 0 {
		return cpapi.Release{}, refuse(cpapi.CodeNoReleaseKey, noReleaseKey)
	}
	if s.ReleaseDir == "" {
		return cpapi.Release{}, s.internal(errors.New("no releases directory configured"))
	}
	if err := os.MkdirAll(s.ReleaseDir, 0o700); err != nil {
		return cpapi.Release{}, s.internal(err)
	}
	tmp, err := os.CreateTemp(s.ReleaseDir, ".upload-*")
	if err != nil {
		return cpapi.Release{}, s.internal(err)
	}
	kept := false
	defer func() {
		tmp.Close()
		if !kept {
			os.Remove(tmp.Name())
		}
	}()
	sum := sha256.New()
	size, err := io.Copy(io.MultiWriter(tmp, sum), body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return cpapi.Release{}, refuse(cpapi.CodeTooLarge, "the bundle is larger than %d bytes, the most this control plane accepts", int64(MaxBundle))
		}
		return cpapi.Release{}, refuse(cpapi.CodeBadRequest, "reading the bundle failed after %d bytes: %v; publish it again", size, err)
	}
	if size == 0 {
		return cpapi.Release{}, refuse(cpapi.CodeBadBundle, "the request has no bundle; send the bytes of NAME-VERSION.bundle (outpost releases publish FILE)")
	}
	if err := tmp.Sync(); err != nil {
		return cpapi.Release{}, s.internal(err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return cpapi.Release{}, s.internal(err)
	}
	m, err := release.Verify(tmp, s.ReleaseKeys, release.Policy{})
	if err != nil {
		return cpapi.Release{}, s.badBundle(err)
	}
	r := store.Release{Version: m.Version, Name: m.Name, Architecture: m.Architecture, Size: size, SHA256: hex.EncodeToString(sum.Sum(nil)),
		ImageSize: m.Size, PublishedAt: s.Now().UTC().Truncate(time.Millisecond)} // as stored

	// One publish at a time in this process: the check of the version,
	// the row and the file go together.
	s.publishMu.Lock()
	defer s.publishMu.Unlock()
	err = s.Store.AddRelease(ctx, r)
	if errors.Is(err, store.ErrExists) {
		old, err := s.Store.ReleaseByVersion(ctx, r.Version)
		if err != nil {
			return cpapi.Release{}, s.internal(err)
		}
		if old.SHA256 != r.SHA256 {
			return cpapi.Release{}, refuse(cpapi.CodeExists, "version %s is already published, from another bundle (SHA-256 %s, this one %s); a version is published once: build the new bundle with a higher version", r.Version, old.SHA256, r.SHA256)
		}
		if _, err := os.Stat(s.bundleFile(old)); err == nil {
			return apiRelease(old), nil
		}
		// Recorded, but this server lacks the file (another server's
		// publish, or a crash before the rename): put it in place.
		r = old
	} else if err != nil {
		return cpapi.Release{}, s.internal(err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return cpapi.Release{}, s.internal(err)
	}
	if err := os.Rename(tmp.Name(), s.bundleFile(r)); err != nil {
		s.Store.DeleteRelease(context.WithoutCancel(ctx), r.Version)
		return cpapi.Release{}, s.internal(err)
	}
	kept = true
	if d, err := os.Open(s.ReleaseDir); err == nil {
		d.Sync()
		d.Close()
	}
	s.Log.Info("release published", "release", r.Name, "version", r.Version, "architecture", r.Architecture, "size", r.Size, "sha256", r.SHA256)
	return apiRelease(r), nil
}

// badBundle says why a bundle was refused, and what to do.
func (s *Service) badBundle(err error) *cpapi.Error {
	s.Log.Warn("release refused", "err", err)
	switch {
	case errors.Is(err, release.ErrSignature):
		return refuse(cpapi.CodeBadBundle, "the bundle is not signed by a release key this control plane trusts (%d configured): sign it with a trusted key (outpost image build --release-key KEY), or restart the server with --release-key FILE.pub for the key that signed it", len(s.ReleaseKeys))
	case errors.Is(err, release.ErrHash):
		return refuse(cpapi.CodeBadBundle, "the bundle is damaged (%v); copy or build it again", err)
	}
	return refuse(cpapi.CodeBadBundle, "this is not a release bundle this control plane can use (%v); publish the NAME-VERSION.bundle written by 'outpost image build --release-key'", err)
}

// Releases lists the published releases, newest version first.
func (s *Service) Releases(ctx context.Context) ([]cpapi.Release, error) {
	rs, err := s.releases(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]cpapi.Release, len(rs))
	for i, r := range rs {
		out[i] = apiRelease(r)
	}
	return out, nil
}

// releases lists the releases, newest version first.
func (s *Service) releases(ctx context.Context) ([]store.Release, error) {
	rs, err := s.Store.Releases(ctx)
	if err != nil {
		return nil, s.internal(err)
	}
	sort.Slice(rs, func(i, j int) bool { return release.CompareVersions(rs[i].Version, rs[j].Version) > 0 })
	return rs, nil
}

// Release returns one release.
func (s *Service) Release(ctx context.Context, version string) (cpapi.Release, error) {
	r, err := s.release(ctx, version)
	if err != nil {
		return cpapi.Release{}, err
	}
	return apiRelease(r), nil
}

func (s *Service) release(ctx context.Context, version string) (store.Release, error) {
	r, err := s.Store.ReleaseByVersion(ctx, version)
	if errors.Is(err, store.ErrNotFound) {
		return r, refuse(cpapi.CodeNotFound, "no release with version %q is published; %s", version, s.publishedHint(ctx))
	} else if err != nil {
		return r, s.internal(err)
	}
	return r, nil
}

// publishedHint names the published versions, for a refusal.
func (s *Service) publishedHint(ctx context.Context) string {
	rs, err := s.releases(ctx)
	if err != nil || len(rs) == 0 {
		return "none is published yet (outpost releases publish FILE)"
	}
	var vs []string
	for _, r := range rs {
		vs = append(vs, r.Version)
	}
	return "published: " + strings.Join(vs, ", ")
}

// OpenBundle opens a release's bundle file for download.
func (s *Service) OpenBundle(ctx context.Context, version string) (*os.File, store.Release, error) {
	r, err := s.release(ctx, version)
	if err != nil {
		return nil, r, err
	}
	f, err := os.Open(s.bundleFile(r))
	if errors.Is(err, os.ErrNotExist) {
		return nil, r, refuse(cpapi.CodeNotFound, "release %s is recorded but its bundle is missing on this server (%s); publish the same bundle to this server again", version, s.bundleFile(r))
	} else if err != nil {
		return nil, r, s.internal(err)
	}
	return f, r, nil
}

func apiRelease(r store.Release) cpapi.Release {
	return cpapi.Release{Name: r.Name, Version: r.Version, Architecture: r.Architecture, Size: r.Size, SHA256: r.SHA256, ImageSize: r.ImageSize, PublishedAt: r.PublishedAt}
}

// checkTarget refuses a group target that is not "latest" or a published
// version, naming the published ones; it returns what groups store ("" for
// latest).
func (s *Service) checkTarget(ctx context.Context, v string) (string, error) {
	if v == "" || v == cpapi.TargetLatest {
		return "", nil
	}
	if _, err := s.Store.ReleaseByVersion(ctx, v); errors.Is(err, store.ErrNotFound) {
		return "", refuse(cpapi.CodeBadRequest, "version %q is not published; use %q or a published version (%s)", v, cpapi.TargetLatest, s.publishedHint(ctx))
	} else if err != nil {
		return "", s.internal(err)
	}
	return v, nil
}

// mayDownload lets the connector holding the certificate with serial
// download bundles unless it was revoked, deleted or blocked.
func (s *Service) mayDownload(ctx context.Context, serial string) error {
	h, err := s.Store.ConnectorByCert(ctx, serial)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return refuse(cpapi.CodeRevoked, "no connector holds the certificate with serial %s; it was deleted — enroll again with a current key", serial)
	case err != nil:
		return s.internal(err)
	case h.State == store.ConnectorRevoked:
		return refuse(cpapi.CodeRevoked, "connector %s was revoked; enroll the appliance again with a current key", h.Name)
	case h.State == store.ConnectorBlocked:
		return blocked(h.Name, h.StateReason)
	}
	return nil
}
