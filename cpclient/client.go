// Package cpclient is the admin's HTTP client for the control plane API,
// and the admin.conf file that tells it where the server is, which CA to
// trust and which token to send.
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
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
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

// WriteConfig writes c to path with mode 0600, atomically.
func WriteConfig(path string, c Config) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".admin.conf.tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(append(b, '\n'))
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// APIError is a refusal from the server.
type APIError struct {
	Status  int    `json:"-"`
	Code    string `json:"error"`
	Message string `json:"message"`
}

func (e *APIError) Error() string { return e.Message + " (" + e.Code + ")" }

// Client talks to one control plane.
type Client struct {
	cfg  Config
	http *http.Client
}

// New makes a client that trusts only the config's CA.
func New(c Config) (*Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(c.CA)) {
		return nil, errors.New("admin config: ca holds no PEM certificate")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true}
	return &Client{cfg: c, http: &http.Client{Transport: tr, Timeout: 60 * time.Second}}, nil
}

// Do sends a JSON request to path (e.g. /api/v1/keys) and decodes the
// answer into out. A refusal is returned as *APIError.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
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
		e := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(b, e) != nil || e.Code == "" {
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

// Path escapes name for use as one path segment.
func Path(format string, names ...string) string {
	a := make([]any, len(names))
	for i, n := range names {
		a[i] = url.PathEscape(n)
	}
	return fmt.Sprintf(format, a...)
}
