package controlplane

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-appliance/outpost/controlplane/store"
	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/pki"
	"github.com/outpost-appliance/outpost/provkey"
)

// refuse makes a refusal; the HTTP layer picks its status from the code.
func refuse(code, format string, a ...any) *cpapi.Error {
	return &cpapi.Error{Code: code, Message: fmt.Sprintf(format, a...)}
}

// Service is the control plane's logic, independent of HTTP.
type Service struct {
	Store     *store.Store
	Authority *pki.Authority
	// KeyHost is the HOST[:PORT] written into new keys; Hosts are every
	// HOST[:PORT] a key may name to be accepted here.
	KeyHost string
	Hosts   []string
	Log     *slog.Logger
	Now     func() time.Time
	// Interval is how often connectors are asked to heartbeat; a connector
	// silent for cpapi.UnreachableAfter intervals is unreachable.
	Interval time.Duration
	// ReleaseKeys are the release keys whose bundles may be published;
	// ReleaseDir is where published bundles are kept.
	ReleaseKeys []ed25519.PublicKey
	ReleaseDir  string
	// UpgradeTimeout is how long an ordered connector has to come back
	// healthy on the new version; zero: DefaultUpgradeTimeout.
	UpgradeTimeout time.Duration

	publishMu sync.Mutex // one publish at a time: version check, row, file
	aead      cipher.AEAD
	prunes    atomic.Int64 // failed enrollments counted, to prune old counts now and then
}

// Failed enrollments (invalid_key) from one address with one key id are
// limited to maxFailures per failWindow, across every server sharing the
// database.
const (
	maxFailures = 10
	failWindow  = time.Minute
)

// DefaultInterval is the heartbeat interval unless configured otherwise.
const DefaultInterval = 10 * time.Second

// NewService wires a service. sealKey (32 bytes) encrypts key secrets at rest.
func NewService(st *store.Store, a *pki.Authority, sealKey []byte, keyHost string, hosts []string, log *slog.Logger, now func() time.Time) (*Service, error) {
	block, err := aes.NewCipher(sealKey)
	if err != nil {
		return nil, fmt.Errorf("secret sealing key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	return &Service{Store: st, Authority: a, KeyHost: keyHost, Hosts: hosts, Log: log, Now: now, Interval: DefaultInterval, aead: aead}, nil
}

func (s *Service) seal(id provkey.ID, secret []byte) (string, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(s.aead.Seal(nonce, nonce, secret, id[:])), nil
}

func (s *Service) unseal(k store.Key) (provkey.Key, error) {
	id, err := provkey.ParseID(k.ID)
	if err != nil {
		return provkey.Key{}, err
	}
	raw, err := base64.StdEncoding.DecodeString(k.Sealed)
	if err != nil || len(raw) < s.aead.NonceSize() {
		return provkey.Key{}, fmt.Errorf("key %s: sealed secret is damaged", k.Name)
	}
	secret, err := s.aead.Open(nil, raw[:s.aead.NonceSize()], raw[s.aead.NonceSize():], id[:])
	if err != nil {
		return provkey.Key{}, fmt.Errorf("key %s: cannot unseal its secret with this server's secrets.key (was the data directory replaced?)", k.Name)
	}
	pk := s.skeleton(k)
	copy(pk.Secret[:], secret)
	return pk, nil
}

// skeleton is the key without its secret: enough for the redacted form.
func (s *Service) skeleton(k store.Key) provkey.Key {
	pk := provkey.Key{Version: provkey.Version, Host: k.Host}
	id, _ := provkey.ParseID(k.ID)
	pk.ID = id
	if b, err := hex.DecodeString(strings.TrimPrefix(k.Pin, "sha256:")); err == nil {
		copy(pk.Pin[:], b)
	}
	return pk
}

// invalidKeyMessage is the one answer to a key this server does not accept:
// unknown id, deleted, regenerated or a wrong secret look the same.
const invalidKeyMessage = "this control plane does not accept the provisioning key (unknown, deleted or regenerated since it was copied); ask the admin for the current key ('outpost keys reveal NAME') and check it with 'outpost key check'"

// Enroll checks a key and CSR, counts one use and issues a certificate.
// source identifies the client for rate limiting (its IP address).
func (s *Service) Enroll(ctx context.Context, req cpapi.EnrollRequest, source string) (cpapi.EnrollResponse, error) {
	now := s.Now()
	var keyID string
	fail := func(e *cpapi.Error) (cpapi.EnrollResponse, error) {
		s.Log.Warn("enrollment refused", "code", e.Code, "reason", e.Message, "key_id", keyID,
			"nonce", req.Nonce, "fingerprint", req.Fingerprint, "source", source)
		return cpapi.EnrollResponse{}, e
	}
	// invalid answers an unauthenticated caller the same sentence whether
	// the key id is unknown or its secret wrong, so nobody learns which
	// ids exist or what they are called; the detail goes to the log only.
	invalid := func(detail string) (cpapi.EnrollResponse, error) {
		s.Log.Warn("enrollment refused", "code", cpapi.CodeInvalidKey, "reason", detail, "key_id", keyID,
			"nonce", req.Nonce, "fingerprint", req.Fingerprint, "source", source)
		return cpapi.EnrollResponse{}, refuse(cpapi.CodeInvalidKey, invalidKeyMessage)
	}
	var missing []string
	for _, f := range []struct{ name, v string }{{"key", req.Key}, {"csr", req.CSR}, {"fingerprint", req.Fingerprint}, {"nonce", req.Nonce}} {
		if strings.TrimSpace(f.v) == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fail(refuse(cpapi.CodeBadRequest, "the request is missing %s; send a JSON object with key, csr, fingerprint and nonce", strings.Join(missing, ", ")))
	}
	if e := checkReported(cpapi.CheckFingerprint(req.Fingerprint), cpapi.CheckNonce(req.Nonce)); e != nil {
		return fail(e)
	}
	// failed counts a failure of (source, keyID), or answers 429 once
	// there were too many: before the check of a secret that matched, never.
	failed := func(answer func() (cpapi.EnrollResponse, error)) (cpapi.EnrollResponse, error) {
		if n, err := s.Store.Failures(ctx, source, keyID, now, failWindow); err != nil {
			s.Log.Error("rate limit", "err", err)
		} else if n >= maxFailures {
			return fail(refuse(cpapi.CodeRateLimited, "too many failed enrollments from %s with this key; wait a minute before trying again, and check that the provisioning key was copied completely ('outpost key check')", source))
		}
		if _, err := s.Store.CountFailure(ctx, source, keyID, now, failWindow); err != nil {
			s.Log.Error("rate limit", "err", err)
		}
		if s.prunes.Add(1)%256 == 0 {
			if err := s.Store.PruneFailures(ctx, now, failWindow); err != nil {
				s.Log.Error("rate limit", "err", err)
			}
		}
		return answer()
	}
	pk, err := provkey.Parse(req.Key)
	if err != nil {
		return failed(func() (cpapi.EnrollResponse, error) {
			return fail(refuse(cpapi.CodeInvalidKey, "the provisioning key is not valid (%v); copy the key again from 'outpost keys reveal' and check it with 'outpost key check'", err))
		})
	}
	keyID = pk.ID.String()
	if !s.acceptsHost(pk.Host) {
		return fail(refuse(cpapi.CodeWrongHost, "this provisioning key was issued for the control plane at %s, but this server is %s; enroll against %s or create a key on this server", pk.Host, s.KeyHost, pk.Host))
	}
	if pk.Pin != provkey.PinOf(s.Authority.Root.Cert) {
		return fail(refuse(cpapi.CodeWrongHost, "this provisioning key was issued by another control plane (its CA pin %s is not this server's %s); create a key on this server", pk.Pin, provkey.PinOf(s.Authority.Root.Cert)))
	}
	k, err := s.Store.KeyByID(ctx, keyID)
	if errors.Is(err, store.ErrNotFound) {
		return failed(func() (cpapi.EnrollResponse, error) {
			return invalid("unknown key id (never created here, or deleted)")
		})
	}
	if err != nil {
		return fail(s.internal(err))
	}
	hash, _ := hex.DecodeString(k.SecretHash)
	if !pk.SecretMatches(hash) {
		return failed(func() (cpapi.EnrollResponse, error) {
			return invalid(fmt.Sprintf("wrong secret for key %s (generation %d): a copy from before a regeneration, or a guess", k.Name, k.Generation))
		})
	}
	if k.State == store.KeyRevoked {
		return fail(refuse(cpapi.CodeKeyRevoked, "the provisioning key %s was revoked; create a new key with 'outpost keys create'", k.Name))
	}
	csr, err := pki.ParseCSR([]byte(req.CSR))
	if err != nil {
		return fail(refuse(cpapi.CodeBadCSR, "%v", err))
	}
	// A retry after a lost response (same key, same key pair) gets the
	// first answer. On the hot path Enroll detects it (the insert conflicts
	// and the count rolls back); a key that cannot enroll more is checked
	// here first.
	if e := s.usable(k, now); e != nil {
		if c, err := s.Store.ConnectorByCSR(ctx, keyID, csr.PublicKeyHash); err == nil {
			return s.again(c, req, fail)
		}
		return fail(e)
	}
	ca := s.Authority.Signing[k.SigningCA]
	if ca == nil {
		return fail(s.internal(fmt.Errorf("key %s names signing CA %q, which this server does not have", k.Name, k.SigningCA)))
	}
	c, err := s.Store.Enroll(ctx, store.Enrollment{
		KeyID: keyID, Generation: k.Generation, Fingerprint: req.Fingerprint, PubKeyHash: csr.PublicKeyHash, Nonce: req.Nonce, Now: now,
		Sign: func(name string) (string, string, time.Time, error) {
			iss, err := ca.Sign(csr, name, now)
			if err != nil {
				return "", "", time.Time{}, err
			}
			return iss.Serial, string(iss.ChainPEM), iss.Cert.NotAfter, nil
		},
	})
	switch {
	case errors.Is(err, store.ErrNoUse):
		if c, err := s.Store.ConnectorByCSR(ctx, keyID, csr.PublicKeyHash); err == nil {
			return s.again(c, req, fail)
		}
		// Changed between our read and the count: explain the current state.
		k2, err2 := s.Store.KeyByID(ctx, keyID)
		if err2 != nil {
			return fail(refuse(cpapi.CodeInvalidKey, "the provisioning key %s was deleted meanwhile; ask the admin for a current key", k.Name))
		}
		if k2.State == store.KeyRevoked {
			return fail(refuse(cpapi.CodeKeyRevoked, "the provisioning key %s was revoked; create a new key with 'outpost keys create'", k.Name))
		}
		if e := s.usable(k2, now); e != nil {
			return fail(e)
		}
		return fail(refuse(cpapi.CodeInvalidKey, "the provisioning key %s was regenerated meanwhile and this copy no longer works; get the current text with 'outpost keys reveal %s'", k.Name, k.Name))
	case errors.Is(err, store.ErrExists):
		if c, err := s.Store.ConnectorByCSR(ctx, keyID, csr.PublicKeyHash); err == nil {
			return s.again(c, req, fail)
		}
		return fail(s.internal(fmt.Errorf("connector name collision for key %s", k.Name)))
	case err != nil:
		return fail(s.internal(err))
	}
	s.Log.Info("connector enrolled", "connector", c.Name, "group", c.Group, "key_id", keyID, "nonce", req.Nonce, "fingerprint", req.Fingerprint, "serial", c.Serial)
	return cpapi.EnrollResponse{Name: c.Name, Group: c.Group, Certificate: c.CertPEM}, nil
}

func (s *Service) again(c store.Connector, req cpapi.EnrollRequest, fail func(*cpapi.Error) (cpapi.EnrollResponse, error)) (cpapi.EnrollResponse, error) {
	if c.State == store.ConnectorRevoked {
		return fail(refuse(cpapi.CodeRevoked, "connector %s, enrolled earlier with this key pair, was revoked; generate a new key pair on the appliance and enroll with a current key", c.Name))
	}
	s.Log.Info("enrollment repeated", "connector", c.Name, "key_id", c.KeyID, "nonce", req.Nonce, "fingerprint", req.Fingerprint)
	return cpapi.EnrollResponse{Name: c.Name, Group: c.Group, Certificate: c.CertPEM}, nil
}

// usable says why a key cannot enroll one more connector now, or nil.
func (s *Service) usable(k store.Key, now time.Time) *cpapi.Error {
	if k.State == store.KeyRevoked {
		return refuse(cpapi.CodeKeyRevoked, "the provisioning key %s was revoked; create a new key with 'outpost keys create'", k.Name)
	}
	if !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt) {
		return refuse(cpapi.CodeKeyExpired, "the provisioning key %s expired at %s; create a new key, or a key that never expires with --expires-in never", k.Name, k.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if k.UseCount >= k.MaxUses {
		return refuse(cpapi.CodeKeyExhausted, "%s has been used %d of %d times; raise its maximum uses (outpost keys edit %s --max-uses N) or use another key", k.Name, k.UseCount, k.MaxUses, k.Name)
	}
	return nil
}

func (s *Service) internal(err error) *cpapi.Error {
	s.Log.Error("internal error", "err", err)
	return refuse(cpapi.CodeInternal, "the control plane failed (%v); see its log, and try again", err)
}

func (s *Service) acceptsHost(h string) bool {
	for _, a := range s.Hosts {
		if strings.EqualFold(a, h) {
			return true
		}
	}
	return false
}

// HostsFor lists the HOST[:PORT] forms a key may carry for a server whose
// certificate covers names and which listens on port: "name:port" always,
// and the bare name when the port is 443.
func HostsFor(names []string, port int) []string {
	var out []string
	for _, n := range names {
		h := n
		if strings.Contains(n, ":") {
			h = "[" + n + "]"
		}
		out = append(out, h+":"+strconv.Itoa(port))
		if port == 443 {
			out = append(out, h)
		}
	}
	return out
}

// SourceOf returns the IP address part of a remote address.
func SourceOf(remoteAddr string) string {
	if h, _, err := net.SplitHostPort(remoteAddr); err == nil {
		return h
	}
	return remoteAddr
}

// Heartbeat records a report from the connector holding the certificate
// with serial: the current one, or the previous one while a renewal has
// not reached the connector. A fingerprint different from the enrolled one
// blocks it. The report is written in a batch (store.FlushInterval), but
// shown at once.
func (s *Service) Heartbeat(ctx context.Context, serial string, req cpapi.HeartbeatRequest) (cpapi.HeartbeatResponse, error) {
	var upgradeErr error
	if req.Upgrade != nil {
		upgradeErr = cpapi.CheckUpgradeReport(*req.Upgrade)
	}
	if e := checkReported(cpapi.CheckFingerprint(req.Fingerprint), cpapi.CheckVersion(req.Version), cpapi.CheckAddresses(req.Addresses), upgradeErr); e != nil {
		return cpapi.HeartbeatResponse{}, e
	}
	h, err := s.holder(ctx, serial, req.Fingerprint)
	if err != nil {
		return cpapi.HeartbeatResponse{}, err
	}
	if h.State == store.ConnectorBlocked { // the original hardware is back
		if err := s.Store.SetConnectorState(ctx, h.Name, store.ConnectorActive, ""); err != nil {
			return cpapi.HeartbeatResponse{}, s.internal(err)
		}
		s.Log.Info("connector unblocked: its original hardware is back", "connector", h.Name)
	}
	if h.Renewing && !h.Previous { // the connector uses its new certificate
		if err := s.Store.ForgetPrevious(ctx, h.Name, serial); err != nil {
			return cpapi.HeartbeatResponse{}, s.internal(err)
		}
	}
	now := s.Now()
	u := h.Upgrade
	if r := req.Upgrade; r != nil && (r.State != u.State || r.Reason != u.Reason || r.Version != u.Version) {
		// Written at once, not in the heartbeat batch: the scheduler
		// stops the group's rollout on a failure, on whichever server.
		if err := s.Store.ReportUpgrade(ctx, h.Name, r.State, r.Reason, r.Version, now); err != nil {
			return cpapi.HeartbeatResponse{}, s.internal(err)
		}
		u.State, u.Reason, u.Version, u.ReportedAt = r.State, r.Reason, r.Version, now
		if r.State == cpapi.UpgradeFailed {
			s.Log.Warn("connector reports a failed upgrade", "connector", h.Name, "version", r.Version, "reason", r.Reason, "running", req.Version)
		} else {
			s.Log.Info("connector reports an upgrade", "connector", h.Name, "version", r.Version, "state", r.State)
		}
	}
	s.Store.Heartbeat(h.Name, store.Beat{At: now, Version: req.Version, Uptime: req.Uptime, Addresses: req.Addresses, Skew: req.Skew})
	return cpapi.HeartbeatResponse{Name: h.Name, State: cpapi.ConnectorActive, ServerTime: now.UTC(), Interval: int(s.Interval / time.Second),
		Upgrade: s.upgradeOrder(ctx, h.Name, u, req.Version)}, nil
}

// holder finds the connector of a client certificate and refuses a
// revoked, deleted or blocked one; a fingerprint different from the
// enrolled one blocks it. A blocked connector whose fingerprint is the
// enrolled one again is returned (still blocked): the caller decides.
func (s *Service) holder(ctx context.Context, serial, fingerprint string) (store.Holder, error) {
	h, err := s.Store.ConnectorByCert(ctx, serial)
	if errors.Is(err, store.ErrNotFound) {
		return h, refuse(cpapi.CodeRevoked, "no connector holds the certificate with serial %s; it was deleted — enroll again with a current key", serial)
	}
	if err != nil {
		return h, s.internal(err)
	}
	if h.State == store.ConnectorRevoked {
		return h, refuse(cpapi.CodeRevoked, "connector %s was revoked; enroll the appliance again with a current key", h.Name)
	}
	if fingerprint != h.Fingerprint {
		why := "the hardware fingerprint changed: " + FingerprintChange(h.Fingerprint, fingerprint)
		if h.State != store.ConnectorBlocked || h.StateReason != why {
			if err := s.Store.SetConnectorState(ctx, h.Name, store.ConnectorBlocked, why); err != nil {
				return h, s.internal(err)
			}
			s.Log.Warn("connector blocked", "connector", h.Name, "reason", why)
		}
		return h, blocked(h.Name, why)
	}
	return h, nil
}

func blocked(name, why string) *cpapi.Error {
	return refuse(cpapi.CodeBlocked, "connector %s is blocked: %s. Restore the original hardware (a VM's MAC address must stay fixed), or revoke the connector and enroll the appliance again", name, why)
}

// Renew issues a new certificate to the connector holding the certificate
// with serial (current or previous), for the key pair of the CSR, signed by
// the CA that signed its enrollment. The certificate presented stays
// accepted until the connector heartbeats with the new one. A retry with
// the same CSR public key gets the same certificate.
func (s *Service) Renew(ctx context.Context, serial string, req cpapi.RenewRequest) (cpapi.RenewResponse, error) {
	fail := func(e *cpapi.Error) (cpapi.RenewResponse, error) {
		s.Log.Warn("renewal refused", "code", e.Code, "reason", e.Message, "serial", serial, "fingerprint", req.Fingerprint)
		return cpapi.RenewResponse{}, e
	}
	if strings.TrimSpace(req.CSR) == "" {
		return fail(refuse(cpapi.CodeBadRequest, "the request is missing csr; send a JSON object with csr and fingerprint"))
	}
	if e := checkReported(cpapi.CheckFingerprint(req.Fingerprint)); e != nil {
		return fail(e)
	}
	h, err := s.holder(ctx, serial, req.Fingerprint)
	var e *cpapi.Error
	if errors.As(err, &e) {
		return fail(e)
	}
	if h.State == store.ConnectorBlocked {
		// Only a heartbeat with the original hardware unblocks.
		return fail(blocked(h.Name, h.StateReason))
	}
	csr, err := pki.ParseCSR([]byte(req.CSR))
	if err != nil {
		return fail(refuse(cpapi.CodeBadCSR, "%v", err))
	}
	for range 3 {
		c, err := s.Store.ConnectorByName(ctx, h.Name)
		if err != nil {
			return fail(s.internal(err))
		}
		if c.State != store.ConnectorActive || c.Serial != serial && c.PrevSerial != serial {
			break // changed meanwhile: answer as a new request would be
		}
		if csr.PublicKeyHash == c.CertPubKeyHash {
			// A retry after a lost answer, or a request to renew with the
			// key pair already certified: that certificate.
			return cpapi.RenewResponse{Certificate: c.CertPEM}, nil
		}
		ca := s.Authority.Signing[c.SigningCA]
		if ca == nil {
			return fail(s.internal(fmt.Errorf("connector %s was signed by CA %q, which this server does not have", c.Name, c.SigningCA)))
		}
		now := s.Now()
		iss, err := ca.Sign(csr, c.Name, now)
		if err != nil {
			return fail(s.internal(err))
		}
		err = s.Store.Renew(ctx, store.Renewal{Name: c.Name, From: serial, Current: c.Serial, Serial: iss.Serial, CertPEM: string(iss.ChainPEM), Expires: iss.Cert.NotAfter, PubKeyHash: csr.PublicKeyHash})
		if errors.Is(err, store.ErrConflict) {
			continue // another renewal or a revocation came first
		}
		if err != nil {
			return fail(s.internal(err))
		}
		s.Log.Info("connector certificate renewed", "connector", c.Name, "serial", iss.Serial, "previous", serial, "expires", iss.Cert.NotAfter)
		return cpapi.RenewResponse{Certificate: string(iss.ChainPEM)}, nil
	}
	// The connector changed under us: answer what it is now.
	if _, err := s.holder(ctx, serial, req.Fingerprint); err != nil {
		if errors.As(err, &e) {
			return fail(e)
		}
	}
	return fail(refuse(cpapi.CodeConflict, "the certificate of connector %s changed while renewing it; try again", h.Name))
}

// health is the one place a connector's health is derived.
func (s *Service) health(c store.Connector, now time.Time) string {
	switch {
	case c.State == store.ConnectorRevoked:
		return cpapi.HealthRevoked
	case c.State == store.ConnectorBlocked:
		return cpapi.HealthBlocked
	case c.LastSeen.IsZero():
		return cpapi.HealthNeverSeen
	case now.Sub(c.LastSeen) >= cpapi.UnreachableAfter*s.Interval:
		return cpapi.HealthUnreachable
	}
	return cpapi.HealthHealthy
}

// checkReported refuses what a connector reported (fingerprint, version,
// nonce) unless it follows cpapi's grammar: these strings end up in
// admins' terminals.
func checkReported(errs ...error) *cpapi.Error {
	var msgs []string
	for _, err := range errs {
		if err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return refuse(cpapi.CodeBadRequest, "%s", strings.Join(msgs, "; "))
}

// FingerprintChange describes how fingerprint "a=1;b=2" became another one,
// naming each changed part: `mac changed from X to Y`.
func FingerprintChange(old, cur string) string {
	po, pn := parseFingerprint(old), parseFingerprint(cur)
	if po == nil || pn == nil {
		return fmt.Sprintf("was %q, now %q", old, cur)
	}
	names := map[string]bool{}
	for k := range po {
		names[k] = true
	}
	for k := range pn {
		names[k] = true
	}
	var sorted []string
	for k := range names {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	var parts []string
	for _, k := range sorted {
		o, okO := po[k]
		n, okN := pn[k]
		switch {
		case okO && okN && o != n:
			parts = append(parts, fmt.Sprintf("%s changed from %s to %s", k, o, n))
		case okO && !okN:
			parts = append(parts, fmt.Sprintf("%s %s is missing", k, o))
		case !okO && okN:
			parts = append(parts, fmt.Sprintf("%s %s is new", k, n))
		}
	}
	if len(parts) == 0 {
		return fmt.Sprintf("was %q, now %q", old, cur)
	}
	return strings.Join(parts, "; ")
}

func parseFingerprint(s string) map[string]string {
	m := map[string]string{}
	for _, p := range strings.Split(s, ";") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			return nil
		}
		m[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return m
}
