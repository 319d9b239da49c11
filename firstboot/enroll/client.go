// Package enroll is the appliance's side of enrollment: the key pair and CSR
// made on the appliance, the hardware fingerprint, TLS trusted only through
// the CA pin carried in the provisioning key (which also tells SSL inspection
// apart from the real control plane), and the request with retries that
// reuse the same CSR and nonce so the control plane counts one use.
//
// The request, the answer, the path and the refusal codes are cpapi's; the
// transport (TLS verified against the pin) is this package's own.
//
// It does not store anything or decide when to enroll; the firstboot stages do.
package enroll

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"

	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/provkey"
)

// RefusedError is a refusal from the control plane; retrying will not help.
// errors.As finds the *cpapi.Error in it; branch on its code
// (cpapi.IsCode(err, cpapi.CodeKeyExhausted)).
type RefusedError struct {
	Status  int // HTTP status, for the log
	Refusal *cpapi.Error
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("enrollment refused: %s — %s", e.Refusal.Code, e.Refusal.Message)
}

func (e *RefusedError) Unwrap() error { return e.Refusal }

// Result is a successful enrollment.
type Result struct {
	cpapi.EnrollResponse
}

// NotAfter returns the leaf certificate's expiry.
func (r Result) NotAfter() (time.Time, error) {
	b, _ := pem.Decode([]byte(r.Certificate))
	if b == nil {
		return time.Time{}, errors.New("the control plane returned no PEM certificate")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return time.Time{}, fmt.Errorf("certificate from the control plane: %w", err)
	}
	return c.NotAfter, nil
}

// Client enrolls with the control plane named in a provisioning key.
type Client struct {
	Key provkey.Key
	// Now is the clock used for certificate checks (corrected by the time
	// stage when the system clock could not be set). Default time.Now.
	Now func() time.Time
	// Sleep waits between attempts; default is a timer honouring ctx.
	Sleep func(ctx context.Context, d time.Duration) error
	// Attempts bounds the number of requests; 0 means until ctx ends.
	Attempts int
	// Proxy is an optional HTTP proxy URL (CONNECT); TLS stays end to end.
	Proxy *url.URL
	Log   *slog.Logger
	// Transport overrides the HTTP transport (tests); the pinned TLS
	// configuration is installed on it.
	Transport *http.Transport
}

// Backoff bounds.
const (
	backoffBase = time.Second
	backoffMax  = 60 * time.Second
)

func (c *Client) httpClient() *http.Client {
	tr := c.Transport
	if tr == nil {
		tr = &http.Transport{ForceAttemptHTTP2: true, TLSHandshakeTimeout: 15 * time.Second}
	} else {
		tr = tr.Clone()
	}
	tr.TLSClientConfig = PinnedTLS(c.Key.Host, c.Key.Pin, c.Now)
	if c.Proxy != nil {
		tr.Proxy = http.ProxyURL(c.Proxy)
	} else {
		tr.Proxy = nil
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// URL returns the enrollment endpoint for the key's host.
func (c *Client) URL() string { return "https://" + c.Key.Host + cpapi.PathEnroll }

// Enroll sends key, CSR, fingerprint and nonce and returns the signed chain.
// Network errors and 5xx answers are retried with exponential backoff and
// jitter using the same id (so the server counts one use); refusals and a
// failed pin check are returned at once.
func (c *Client) Enroll(ctx context.Context, id *Identity) (*Result, error) {
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sleep := c.Sleep
	if sleep == nil {
		sleep = func(ctx context.Context, d time.Duration) error {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-t.C:
				return nil
			}
		}
	}
	body, err := json.Marshal(cpapi.EnrollRequest{
		Key:         c.Key.Reveal(), // the one place the key leaves the appliance
		CSR:         string(id.CSRPEM),
		Fingerprint: id.Fingerprint,
		Nonce:       id.Nonce,
	})
	if err != nil {
		return nil, err
	}
	hc := c.httpClient()
	defer hc.CloseIdleConnections()
	attrs := []any{"host", c.Key.Host, "key_id", c.Key.ID.String(), "nonce", id.Nonce, "fingerprint", id.Fingerprint}
	delay := backoffBase
	for attempt := 1; ; attempt++ {
		res, err := c.once(ctx, hc, body)
		if err == nil {
			log.Info("enrolled", append(attrs, "name", res.Name, "group", res.Group)...)
			return res, nil
		}
		var ref *RefusedError
		if errors.As(err, &ref) {
			log.Error("enrollment refused", append(attrs, "status", ref.Status, "code", ref.Refusal.Code, "reason", ref.Refusal.Message)...)
			return nil, err
		}
		if errors.Is(err, ErrInterception) || errors.Is(err, errPermanent) {
			log.Error("enrollment stopped", append(attrs, "err", err)...)
			return nil, unwrapPermanent(err)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("enroll with %s: %w (last error: %v)", c.Key.Host, ctx.Err(), err)
		}
		if c.Attempts > 0 && attempt >= c.Attempts {
			return nil, fmt.Errorf("enroll with %s: giving up after %d attempts: %w", c.Key.Host, attempt, err)
		}
		// Full jitter around the exponential step keeps a fleet that lost
		// its control plane from retrying in lockstep.
		wait := delay/2 + rand.N(delay/2+1)
		log.Warn("enrollment attempt failed; retrying", append(attrs, "attempt", attempt, "retry_in", wait.Round(time.Millisecond), "err", err)...)
		if serr := sleep(ctx, wait); serr != nil {
			return nil, fmt.Errorf("enroll with %s: %w (last error: %v)", c.Key.Host, serr, err)
		}
		delay = min(2*delay, backoffMax)
	}
}

var errPermanent = errors.New("permanent")

type permanentError struct{ err error }

func (e permanentError) Error() string        { return e.err.Error() }
func (e permanentError) Is(target error) bool { return target == errPermanent }
func (e permanentError) Unwrap() error        { return e.err }

func unwrapPermanent(err error) error {
	var p permanentError
	if errors.As(err, &p) {
		return p.err
	}
	return err
}

func (c *Client) once(ctx context.Context, hc *http.Client, body []byte) (*Result, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL(), bytes.NewReader(body))
	if err != nil {
		return nil, permanentError{err}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		var ie *InterceptionError
		if errors.As(err, &ie) {
			return nil, ie
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // drop the URL: it is in the log attributes already
		}
		if isCertError(err) {
			return nil, permanentError{fmt.Errorf("TLS with %s: %w", c.Key.Host, err)}
		}
		return nil, fmt.Errorf("connect to %s: %w", c.Key.Host, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read answer from %s: %w", c.Key.Host, err)
	}
	switch {
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusCreated:
		var r Result
		if err := json.Unmarshal(b, &r); err != nil || r.Name == "" || r.Certificate == "" {
			return nil, fmt.Errorf("answer from %s is not an enrollment result (status %d)", c.Key.Host, resp.StatusCode)
		}
		return &r, nil
	case resp.StatusCode >= 500:
		return nil, fmt.Errorf("control plane %s answered %s", c.Key.Host, resp.Status)
	default:
		e, ok := cpapi.ParseError(b)
		if !ok {
			return nil, permanentError{fmt.Errorf("control plane %s answered %s without a reason; is %s the control plane?", c.Key.Host, resp.Status, c.Key.Host)}
		}
		return nil, &RefusedError{Status: resp.StatusCode, Refusal: e}
	}
}

func isCertError(err error) bool {
	var (
		inv  x509.CertificateInvalidError
		host x509.HostnameError
		ua   x509.UnknownAuthorityError
	)
	return errors.As(err, &inv) || errors.As(err, &host) || errors.As(err, &ua)
}
