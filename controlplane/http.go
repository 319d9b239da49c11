package controlplane

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/pki"
)

// MaxBody is the largest request body accepted (a CSR is a few KB).
const MaxBody = 64 << 10

// statuses is the one place a refusal code becomes an HTTP status.
var statuses = map[string]int{
	cpapi.CodeBadRequest:       http.StatusBadRequest,
	cpapi.CodeTooLarge:         http.StatusRequestEntityTooLarge,
	cpapi.CodeInvalidKey:       http.StatusUnauthorized,
	cpapi.CodeWrongHost:        http.StatusBadRequest,
	cpapi.CodeKeyExhausted:     http.StatusForbidden,
	cpapi.CodeKeyRevoked:       http.StatusForbidden,
	cpapi.CodeKeyExpired:       http.StatusForbidden,
	cpapi.CodeBadCSR:           http.StatusBadRequest,
	cpapi.CodeRateLimited:      http.StatusTooManyRequests,
	cpapi.CodeBlocked:          http.StatusForbidden,
	cpapi.CodeRevoked:          http.StatusForbidden,
	cpapi.CodeUnauthorized:     http.StatusUnauthorized,
	cpapi.CodeNotFound:         http.StatusNotFound,
	cpapi.CodeMethodNotAllowed: http.StatusMethodNotAllowed,
	cpapi.CodeExists:           http.StatusConflict,
	cpapi.CodeConflict:         http.StatusConflict,
	cpapi.CodeInternal:         http.StatusInternalServerError,
	cpapi.CodeUnhealthy:        http.StatusServiceUnavailable,
	cpapi.CodeNoReleaseKey:     http.StatusConflict,
	cpapi.CodeBadBundle:        http.StatusBadRequest,
}

// adminStatuses override statuses on the admin API: there a used-up key is
// a conflict with the request (reveal), not a refusal of the appliance.
var adminStatuses = map[string]int{
	cpapi.CodeKeyExhausted: http.StatusConflict,
}

// Handler serves the enrollment, heartbeat and admin APIs. adminToken
// guards /api/v1/ admin routes.
func Handler(s *Service, adminToken string) http.Handler {
	want := sha256.Sum256([]byte(adminToken))
	badToken := &throttle{period: time.Minute, now: s.Now, seen: map[string]*throttled{}}
	// authorized checks the admin token, or answers the refusal.
	authorized := func(w http.ResponseWriter, r *http.Request) bool {
		auth := r.Header.Get("Authorization")
		tok, ok := strings.CutPrefix(auth, "Bearer ")
		got := sha256.Sum256([]byte(tok))
		if auth == "" {
			writeErr(w, refuse(cpapi.CodeUnauthorized, "this admin request has no token; send 'Authorization: Bearer TOKEN' with the token from admin.conf (outpost … --config DIR/admin.conf)"), adminStatuses)
			return false
		}
		if !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			if ok, suppressed := badToken.allow(SourceOf(r.RemoteAddr)); ok {
				s.Log.Warn("admin request with a wrong token", "source", SourceOf(r.RemoteAddr), "path", r.URL.Path, "suppressed", suppressed)
			}
			writeErr(w, refuse(cpapi.CodeUnauthorized, "the admin token is wrong; use the admin.conf written by this server in its data directory"), adminStatuses)
			return false
		}
		return true
	}
	admin := func(h func(w http.ResponseWriter, r *http.Request) (any, error)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if !authorized(w, r) {
				return
			}
			v, err := h(w, r)
			if err != nil {
				writeErr(w, err, adminStatuses)
				return
			}
			writeJSON(w, http.StatusOK, v)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+cpapi.PathHealthz, func(w http.ResponseWriter, r *http.Request) {
		if err := s.Store.Ping(r.Context()); err != nil {
			writeErr(w, refuse(cpapi.CodeUnhealthy, "the database does not answer: %v", err), nil)
			return
		}
		writeJSON(w, 200, cpapi.Health{Status: "ok"})
	})
	mux.HandleFunc("POST "+cpapi.PathEnroll, func(w http.ResponseWriter, r *http.Request) {
		var req cpapi.EnrollRequest
		if err := decode(w, r, &req); err != nil {
			s.Log.Warn("enrollment refused", "code", err.Code, "reason", err.Message, "source", SourceOf(r.RemoteAddr))
			writeErr(w, err, nil)
			return
		}
		resp, err := s.Enroll(r.Context(), req, SourceOf(r.RemoteAddr))
		if err != nil {
			writeErr(w, err, nil)
			return
		}
		writeJSON(w, http.StatusOK, resp)
	})
	// mtls serves a route for connectors, identified by the serial of the
	// client certificate they enrolled or renewed.
	mtls := func(what string, h func(w http.ResponseWriter, r *http.Request, serial string) (any, error)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
				writeErr(w, refuse(cpapi.CodeUnauthorized, "a %s needs the connector's client certificate (mutual TLS) issued at enrollment", what), nil)
				return
			}
			v, err := h(w, r, pki.SerialHex(r.TLS.VerifiedChains[0][0]))
			if err != nil {
				writeErr(w, err, nil)
				return
			}
			writeJSON(w, http.StatusOK, v)
		}
	}
	mux.HandleFunc("POST "+cpapi.PathHeartbeat, mtls("heartbeat", func(w http.ResponseWriter, r *http.Request, serial string) (any, error) {
		var req cpapi.HeartbeatRequest
		if err := decode(w, r, &req); err != nil {
			return nil, err
		}
		return s.Heartbeat(r.Context(), serial, req)
	}))
	mux.HandleFunc("POST "+cpapi.PathRenew, mtls("renewal", func(w http.ResponseWriter, r *http.Request, serial string) (any, error) {
		var req cpapi.RenewRequest
		if err := decode(w, r, &req); err != nil {
			return nil, err
		}
		return s.Renew(r.Context(), serial, req)
	}))

	mux.HandleFunc("GET "+cpapi.PathGroups, admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		return s.Groups(r.Context())
	}))
	mux.HandleFunc("POST "+cpapi.PathGroups, admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		var sp cpapi.GroupSpec
		if err := decode(w, r, &sp); err != nil {
			return nil, err
		}
		return s.CreateGroup(r.Context(), sp)
	}))
	mux.HandleFunc("GET "+cpapi.PathGroup, admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		return s.Group(r.Context(), r.PathValue("name"))
	}))
	mux.HandleFunc("PATCH "+cpapi.PathGroup, admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		var sp cpapi.GroupSpec
		if err := decode(w, r, &sp); err != nil {
			return nil, err
		}
		sp.Name = r.PathValue("name")
		return s.EditGroup(r.Context(), sp)
	}))
	mux.HandleFunc("DELETE "+cpapi.PathGroup, admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		force, _ := strconv.ParseBool(r.URL.Query().Get(cpapi.QueryForce))
		return cpapi.Deleted{Deleted: r.PathValue("name")}, s.DeleteGroup(r.Context(), r.PathValue("name"), force)
	}))

	mux.HandleFunc("GET "+cpapi.PathKeys, admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		return s.Keys(r.Context(), cpapi.KeyFilterFrom(r.URL.Query()))
	}))
	mux.HandleFunc("POST "+cpapi.PathKeys, admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		var sp cpapi.KeySpec
		if err := decode(w, r, &sp); err != nil {
			return nil, err
		}
		return s.CreateKey(r.Context(), sp)
	}))
	mux.HandleFunc("GET "+cpapi.PathKey, admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		return s.Key(r.Context(), r.PathValue("name"))
	}))
	mux.HandleFunc("PATCH "+cpapi.PathKey, admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		var body cpapi.KeyEdit
		if err := decode(w, r, &body); err != nil {
			return nil, err
		}
		if body.MaxUses == nil {
			return nil, refuse(cpapi.CodeBadRequest, "nothing to change; send max_uses")
		}
		return s.SetMaxUses(r.Context(), r.PathValue("name"), *body.MaxUses)
	}))
	mux.HandleFunc("DELETE "+cpapi.PathKey, admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		force, _ := strconv.ParseBool(r.URL.Query().Get(cpapi.QueryForce))
		return cpapi.Deleted{Deleted: r.PathValue("name")}, s.DeleteKey(r.Context(), r.PathValue("name"), force)
	}))
	mux.HandleFunc("POST "+cpapi.PathKeyReveal, admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		return s.RevealKey(r.Context(), r.PathValue("name"))
	}))
	mux.HandleFunc("POST "+cpapi.PathKeyRegenerate, admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		return s.RegenerateKey(r.Context(), r.PathValue("name"))
	}))
	mux.HandleFunc("POST "+cpapi.PathKeyRevoke, admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		return s.RevokeKey(r.Context(), r.PathValue("name"))
	}))

	mux.HandleFunc("GET "+cpapi.PathConnectors, admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		return s.Connectors(r.Context(), r.URL.Query().Get(cpapi.QueryGroup))
	}))
	mux.HandleFunc("GET "+cpapi.PathConnector, admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		return s.Connector(r.Context(), r.PathValue("name"))
	}))
	mux.HandleFunc("POST "+cpapi.PathConnectorRevoke, admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		return s.RevokeConnector(r.Context(), r.PathValue("name"))
	}))
	mux.HandleFunc("POST "+cpapi.PathGroupUpgrade, admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		if r.ContentLength != 0 { // the body is optional: {} or nothing
			var body cpapi.UpgradeNow
			if err := decode(w, r, &body); err != nil {
				return nil, err
			}
		}
		return s.UpgradeNow(r.Context(), r.PathValue("name"))
	}))

	mux.HandleFunc("POST "+cpapi.PathReleases, admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		// Checked before the body is read: a client that sent
		// "Expect: 100-continue" uploads nothing.
		if len(s.ReleaseKeys) == 0 {
			return nil, refuse(cpapi.CodeNoReleaseKey, noReleaseKey)
		}
		if r.ContentLength > MaxBundle {
			return nil, refuse(cpapi.CodeTooLarge, "the bundle is %d bytes, more than the %d this control plane accepts", r.ContentLength, int64(MaxBundle))
		}
		// A bundle takes longer than the server's read timeout.
		http.NewResponseController(w).SetReadDeadline(time.Time{})
		return s.PublishRelease(r.Context(), http.MaxBytesReader(w, r.Body, MaxBundle))
	}))
	mux.HandleFunc("GET "+cpapi.PathReleases, admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		return s.Releases(r.Context())
	}))
	mux.HandleFunc("GET "+cpapi.PathRelease, admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		return s.Release(r.Context(), r.PathValue("name"))
	}))
	// A bundle goes to a connector (its client certificate, as for a
	// heartbeat) or to an admin (the token).
	mux.HandleFunc("GET "+cpapi.PathReleaseBundle, func(w http.ResponseWriter, r *http.Request) {
		override := map[string]int(nil)
		switch {
		case r.Header.Get("Authorization") != "":
			if !authorized(w, r) {
				return
			}
			override = adminStatuses
		case r.TLS != nil && len(r.TLS.VerifiedChains) > 0:
			if err := s.mayDownload(r.Context(), pki.SerialHex(r.TLS.VerifiedChains[0][0])); err != nil {
				writeErr(w, err, nil)
				return
			}
		default:
			writeErr(w, refuse(cpapi.CodeUnauthorized, "a release bundle is served to a connector (its client certificate, mutual TLS) or to an admin ('Authorization: Bearer TOKEN' from admin.conf)"), nil)
			return
		}
		f, rel, err := s.OpenBundle(r.Context(), r.PathValue("name"))
		if err != nil {
			writeErr(w, err, override)
			return
		}
		defer f.Close()
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("ETag", `"`+rel.SHA256+`"`)
		http.ServeContent(w, r, rel.Name+"-"+rel.Version+".bundle", rel.PublishedAt, f)
	})

	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// "/" matches every method, so the mux never answers 405 by
		// itself: find the methods the path has.
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pattern := mux.Handler(probe); pattern != "/" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeErr(w, refuse(cpapi.CodeMethodNotAllowed, "%s %s is not supported; use %s", r.Method, r.URL.Path, strings.Join(allow, " or ")), nil)
			return
		}
		writeErr(w, refuse(cpapi.CodeNotFound, "no API at %s %s; see the controlplane package documentation for the routes", r.Method, r.URL.Path), nil)
	})
	return mux
}

func decode(w http.ResponseWriter, r *http.Request, v any) *cpapi.Error {
	r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return refuse(cpapi.CodeTooLarge, "the request body is larger than %d bytes; send only the JSON fields of the API", MaxBody)
		}
		if errors.Is(err, io.EOF) {
			return refuse(cpapi.CodeBadRequest, "the request body is empty; send a JSON object")
		}
		return refuse(cpapi.CodeBadRequest, "the request body is not valid JSON for this API: %s", jsonProblem(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return refuse(cpapi.CodeBadRequest, "the request body has data after the JSON object; send exactly one object")
	}
	return nil
}

// throttle lets one log line per source through per period and counts
// the others, so a flood of bad requests cannot flood the log.
type throttle struct {
	mu     sync.Mutex
	period time.Duration
	now    func() time.Time
	seen   map[string]*throttled
}

type throttled struct {
	last       time.Time
	suppressed int
}

// allow reports whether to log for source now and, if so, how many lines
// were suppressed since its last one.
func (t *throttle) allow(source string) (bool, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	e := t.seen[source]
	if e == nil {
		if len(t.seen) >= 10000 { // bound memory under a flood of sources
			for k, v := range t.seen {
				if now.Sub(v.last) >= t.period {
					delete(t.seen, k)
				}
			}
		}
		if len(t.seen) >= 10000 {
			return false, 0
		}
		t.seen[source] = &throttled{last: now}
		return true, 0
	}
	if now.Sub(e.last) < t.period {
		e.suppressed++
		return false, 0
	}
	n := e.suppressed
	e.last, e.suppressed = now, 0
	return true, n
}

// jsonProblem says what is wrong with a request body in the API's words
// (JSON field names and JSON types), never in Go's (controlplane.X,
// cpapi.Y, int64).
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("syntax error at byte %d", syn.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the JSON ends too early"
	case errors.As(err, &typ):
		where := "the body"
		if typ.Field != "" {
			where = "field " + strconv.Quote(typ.Field)
		}
		return fmt.Sprintf("%s must be %s, not %s", where, jsonKind(typ.Type), typ.Value)
	}
	// encoding/json's remaining errors ("json: unknown field \"x\"") name
	// no Go types.
	return strings.TrimPrefix(err.Error(), "json: ")
}

// jsonKind names a Go type as the JSON value it decodes from.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number ≥ 0"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return "an object"
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// writeErr answers a refusal with the status of its code (from override,
// else statuses); any other error is an internal failure.
func writeErr(w http.ResponseWriter, err error, override map[string]int) {
	var e *cpapi.Error
	if !errors.As(err, &e) {
		e = refuse(cpapi.CodeInternal, "the control plane failed: %v", err)
	}
	status, ok := override[e.Code]
	if !ok {
		status, ok = statuses[e.Code]
	}
	if !ok {
		status = http.StatusInternalServerError
	}
	if status == http.StatusRequestEntityTooLarge {
		w.Header().Set("Connection", "close")
	}
	writeJSON(w, status, e)
}
