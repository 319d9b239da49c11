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
	cfg  Config
	http *http.Client
}

// New makes a client that trusts only the config's CA.
func New(c Config, opts ...Option) (*Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(c.CA)) {
		return nil, errors.New("admin config: ca holds no PEM certificate")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true}
	for _, o := range opts {
		o(tr)
	}
	return &Client{cfg: c, http: &http.Client{Transport: tr, Timeout: 60 * time.Second}}, nil
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
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.cfg.Server, "/")+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("control plane %s: %w", c.cfg.Server, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("control plane %s: read answer: %w", c.cfg.Server, err)
	}
	if resp.StatusCode != http.StatusOK {
		e, ok := cpapi.ParseError(b)
		if !ok {
			return fmt.Errorf("control plane %s answered %s: %.200s", c.cfg.Server, resp.Status, b)
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("control plane %s: unexpected answer to %s %s: %v", c.cfg.Server, method, path, err)
	}
	return nil
}
