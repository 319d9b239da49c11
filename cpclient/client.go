// Package cpclient is the admin's typed HTTP client for the control plane
// API (one method per admin endpoint, types from cpapi), and the admin.conf
// file that tells it where the server is, which CA to trust and which token
// to send.
//
// It is not the appliance's enrollment client (that lives in firstboot and
// verifies the server against the pin in the provisioning key).
package cpclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/internal/atomicfile"
)

// Config is the content of admin.conf (JSON, mode 0600: it holds the token).
type Config struct {
	Server string `json:"server"` // https://host:port
	Token  string `json:"token"`
	CA     string `json:"ca"` // PEM of the control plane's root CA
}

// LoadConfig reads and checks an admin.conf.
func LoadConfig(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return c, fmt.Errorf("admin config %s does not exist; pass --config DATA_DIR/admin.conf (written by 'outpost server' on first start) or set OUTPOST_CONFIG", path)
		}
		return c, fmt.Errorf("read admin config: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("%s: not a valid admin config: %v", path, err)
	}
	var missing []string
	if c.Server == "" {
		missing = append(missing, "server")
	}
	if c.Token == "" {
		missing = append(missing, "token")
	}
	if c.CA == "" {
		missing = append(missing, "ca")
	}
	if len(missing) > 0 {
		return c, fmt.Errorf("%s: missing %s", path, strings.Join(missing, ", "))
	}
	return c, nil
}

// CheckConfigMode says, as an error, when the admin.conf at path can be
// read by group or others (it holds the admin token), as ssh does for
// private keys; nil when it is private or cannot be examined.
func CheckConfigMode(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return nil
	}
	if m := st.Mode().Perm(); m&0o077 != 0 {
		return fmt.Errorf("%s is mode %04o: group or others can read the admin token in it; run chmod 600 %s", path, m, path)
	}
	return nil
}

// WriteConfig writes c to path with mode 0600, atomically.
func WriteConfig(path string, c Config) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(b, '\n'), 0o600)
}

// Client talks to one control plane. Every method returns a refusal from
// the server as *cpapi.Error (branch on it with errors.As or cpapi.IsCode),
// and any other failure (network, TLS, an answer that is not the API's) as
// an error naming the server.
type Client struct {
	cfg    Config
	http   *http.Client
	stream *http.Client // no overall timeout: bundles
}

// New makes a client that trusts only the config's CA.
func New(c Config, opts ...Option) (*Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(c.CA)) {
		return nil, errors.New("admin config: ca holds no PEM certificate")
	}
	// ExpectContinueTimeout: a publish is refused (no key, bad token)
	// before its bundle is sent.
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true, ExpectContinueTimeout: 5 * time.Second}
	for _, o := range opts {
		o(tr)
	}
	// Bundles take as long as they take: their transfers are bounded by
	// the caller's context, not by the API's timeout.
	return &Client{cfg: c, http: &http.Client{Transport: tr, Timeout: 60 * time.Second}, stream: &http.Client{Transport: tr}}, nil
}

// Option adjusts the client's transport.
type Option func(*http.Transport)

// WithDialer makes connections with dial: for a control plane reachable
// only from another network namespace (the QEMU lab's).
func WithDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) Option {
	return func(tr *http.Transport) { tr.DialContext = dial }
}

// Health asks whether the server and its database answer.
func (c *Client) Health(ctx context.Context) (h cpapi.Health, err error) {
	return h, c.do(ctx, http.MethodGet, cpapi.PathHealthz, nil, &h)
}

// CreateGroup creates a group.
func (c *Client) CreateGroup(ctx context.Context, sp cpapi.GroupSpec) (g cpapi.Group, err error) {
	return g, c.do(ctx, http.MethodPost, cpapi.PathGroups, sp, &g)
}

// Groups lists the groups.
func (c *Client) Groups(ctx context.Context) (gs []cpapi.Group, err error) {
	return gs, c.do(ctx, http.MethodGet, cpapi.PathGroups, nil, &gs)
}

// Group returns one group.
func (c *Client) Group(ctx context.Context, name string) (g cpapi.Group, err error) {
	return g, c.do(ctx, http.MethodGet, cpapi.Path(cpapi.PathGroup, name), nil, &g)
}

// EditGroup changes the group sp.Name; nil fields of sp stay unchanged.
func (c *Client) EditGroup(ctx context.Context, sp cpapi.GroupSpec) (g cpapi.Group, err error) {
	return g, c.do(ctx, http.MethodPatch, cpapi.Path(cpapi.PathGroup, sp.Name), sp, &g)
}

// DeleteGroup deletes a group; force deletes its keys and revokes its
// connectors too.
func (c *Client) DeleteGroup(ctx context.Context, name string, force bool) (d cpapi.Deleted, err error) {
	path := cpapi.Path(cpapi.PathGroup, name)
	if force {
		path += "?" + url.Values{cpapi.QueryForce: {"true"}}.Encode()
	}
	return d, c.do(ctx, http.MethodDelete, path, nil, &d)
}

// CreateKey creates a provisioning key and returns its text.
func (c *Client) CreateKey(ctx context.Context, sp cpapi.KeySpec) (kt cpapi.KeyText, err error) {
	return kt, c.do(ctx, http.MethodPost, cpapi.PathKeys, sp, &kt)
}

// Keys lists keys, redacted.
func (c *Client) Keys(ctx context.Context, f cpapi.KeyFilter) (ks []cpapi.KeyInfo, err error) {
	return ks, c.do(ctx, http.MethodGet, withQuery(cpapi.PathKeys, f.Values()), nil, &ks)
}

// Key returns one key, redacted.
func (c *Client) Key(ctx context.Context, name string) (k cpapi.KeyInfo, err error) {
	return k, c.do(ctx, http.MethodGet, cpapi.Path(cpapi.PathKey, name), nil, &k)
}

// RevealKey returns a key's text; a used-up key is refused with
// cpapi.CodeKeyExhausted.
func (c *Client) RevealKey(ctx context.Context, name string) (kt cpapi.KeyText, err error) {
	return kt, c.do(ctx, http.MethodPost, cpapi.Path(cpapi.PathKeyReveal, name), nil, &kt)
}

// SetMaxUses changes a key's maximum uses.
func (c *Client) SetMaxUses(ctx context.Context, name string, maxUses int64) (k cpapi.KeyInfo, err error) {
	return k, c.do(ctx, http.MethodPatch, cpapi.Path(cpapi.PathKey, name), cpapi.KeyEdit{MaxUses: &maxUses}, &k)
}

// RegenerateKey gives a key a new secret and returns its new text.
func (c *Client) RegenerateKey(ctx context.Context, name string) (kt cpapi.KeyText, err error) {
	return kt, c.do(ctx, http.MethodPost, cpapi.Path(cpapi.PathKeyRegenerate, name), nil, &kt)
}

// RevokeKey stops a key from enrolling anything more.
func (c *Client) RevokeKey(ctx context.Context, name string) (k cpapi.KeyInfo, err error) {
	return k, c.do(ctx, http.MethodPost, cpapi.Path(cpapi.PathKeyRevoke, name), nil, &k)
}

// DeleteKey deletes a key; the connectors it enrolled stay. A key that
// enrolled connectors is refused (cpapi.CodeConflict) unless force.
func (c *Client) DeleteKey(ctx context.Context, name string, force bool) (d cpapi.Deleted, err error) {
	path := cpapi.Path(cpapi.PathKey, name)
	if force {
		path += "?" + url.Values{cpapi.QueryForce: {"true"}}.Encode()
	}
	return d, c.do(ctx, http.MethodDelete, path, nil, &d)
}

// Connectors lists connectors, of one group unless group is empty.
func (c *Client) Connectors(ctx context.Context, group string) (cs []cpapi.Connector, err error) {
	q := url.Values{}
	if group != "" {
		q.Set(cpapi.QueryGroup, group)
	}
	return cs, c.do(ctx, http.MethodGet, withQuery(cpapi.PathConnectors, q), nil, &cs)
}

// Connector returns one connector.
func (c *Client) Connector(ctx context.Context, name string) (x cpapi.Connector, err error) {
	return x, c.do(ctx, http.MethodGet, cpapi.Path(cpapi.PathConnector, name), nil, &x)
}

// RevokeConnector revokes a connector; the server also regenerates the
// keys of its group.
func (c *Client) RevokeConnector(ctx context.Context, name string) (r cpapi.RevokeResult, err error) {
	return r, c.do(ctx, http.MethodPost, cpapi.Path(cpapi.PathConnectorRevoke, name), nil, &r)
}

// UpgradeNow starts a group's rollout now, outside its window (and clears
// a stopped one); the answer shows the rollout.
func (c *Client) UpgradeNow(ctx context.Context, group string) (g cpapi.Group, err error) {
	return g, c.do(ctx, http.MethodPost, cpapi.Path(cpapi.PathGroupUpgrade, group), cpapi.UpgradeNow{}, &g)
}

// PublishRelease sends a bundle of size bytes, streamed with its
// Content-Length; the server checks it against its release keys.
func (c *Client) PublishRelease(ctx context.Context, bundle io.Reader, size int64) (r cpapi.Release, err error) {
	req, err := c.request(ctx, http.MethodPost, cpapi.PathReleases, io.NopCloser(bundle))
	if err != nil {
		return r, err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Expect", "100-continue")
	return r, c.send(c.stream, req, &r)
}

// PublishReleaseFile publishes the bundle in file.
func (c *Client) PublishReleaseFile(ctx context.Context, file string) (cpapi.Release, error) {
	f, err := os.Open(file)
	if err != nil {
		return cpapi.Release{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return cpapi.Release{}, err
	}
	if !st.Mode().IsRegular() {
		return cpapi.Release{}, fmt.Errorf("%s is not a regular file; give the NAME-VERSION.bundle written by 'outpost image build --release-key'", file)
	}
	return c.PublishRelease(ctx, f, st.Size())
}

// Releases lists the published releases, newest version first.
func (c *Client) Releases(ctx context.Context) (rs []cpapi.Release, err error) {
	return rs, c.do(ctx, http.MethodGet, cpapi.PathReleases, nil, &rs)
}

// Release returns one published release.
func (c *Client) Release(ctx context.Context, version string) (r cpapi.Release, err error) {
	return r, c.do(ctx, http.MethodGet, cpapi.Path(cpapi.PathRelease, version), nil, &r)
}

// DownloadBundle writes a release's bundle to w and returns its size.
func (c *Client) DownloadBundle(ctx context.Context, version string, w io.Writer) (int64, error) {
	req, err := c.request(ctx, http.MethodGet, cpapi.Path(cpapi.PathReleaseBundle, version), nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.stream.Do(req)
	if err != nil {
		return 0, fmt.Errorf("control plane %s: %w", c.cfg.Server, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, c.refusal(resp)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("control plane %s: download release %s: %w", c.cfg.Server, version, err)
	}
	return n, nil
}

func withQuery(path string, q url.Values) string {
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

// do sends a JSON request to path and decodes the answer into out. A
// refusal is returned as *cpapi.Error.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := c.request(ctx, method, path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.send(c.http, req, out)
}

func (c *Client) request(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.cfg.Server, "/")+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	return req, nil
}

// send sends req with hc and decodes a 200 answer into out.
func (c *Client) send(hc *http.Client, req *http.Request, out any) error {
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("control plane %s: %w", c.cfg.Server, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return c.refusal(resp)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("control plane %s: read answer: %w", c.cfg.Server, err)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("control plane %s: unexpected answer to %s %s: %v", c.cfg.Server, req.Method, req.URL.Path, err)
	}
	return nil
}

// refusal reads a non-200 answer: a *cpapi.Error, or an error naming the
// server and status.
func (c *Client) refusal(resp *http.Response) error {
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("control plane %s answered %s; read answer: %w", c.cfg.Server, resp.Status, err)
	}
	e, ok := cpapi.ParseError(b)
	if !ok {
		return fmt.Errorf("control plane %s answered %s: %.200s", c.cfg.Server, resp.Status, b)
	}
	return e
}
