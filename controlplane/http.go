package controlplane

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/outpost-appliance/outpost/controlplane/store"
	"github.com/outpost-appliance/outpost/pki"
)

// MaxBody is the largest request body accepted (a CSR is a few KB).
const MaxBody = 64 << 10

// Handler serves the enrollment, heartbeat and admin APIs. adminToken
// guards /api/v1/ admin routes.
func Handler(s *Service, adminToken string) http.Handler {
	want := sha256.Sum256([]byte(adminToken))
	admin := func(h func(w http.ResponseWriter, r *http.Request) (any, error)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			auth := r.Header.Get("Authorization")
			tok, ok := strings.CutPrefix(auth, "Bearer ")
			got := sha256.Sum256([]byte(tok))
			if auth == "" {
				writeErr(w, refuse(401, CodeUnauthorized, "this admin request has no token; send 'Authorization: Bearer TOKEN' with the token from admin.conf (outpost … --config DIR/admin.conf)"))
				return
			}
			if !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
				s.Log.Warn("admin request with a wrong token", "source", SourceOf(r.RemoteAddr), "path", r.URL.Path)
				writeErr(w, refuse(401, CodeUnauthorized, "the admin token is wrong; use the admin.conf written by this server in its data directory"))
				return
			}
			v, err := h(w, r)
			if err != nil {
				writeErr(w, err)
				return
			}
			writeJSON(w, http.StatusOK, v)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := s.Store.Ping(r.Context()); err != nil {
			writeErr(w, refuse(503, "unhealthy", "the database does not answer: %v", err))
			return
		}
		writeJSON(w, 200, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("POST /api/v1/enroll", func(w http.ResponseWriter, r *http.Request) {
		var req EnrollRequest
		if err := decode(w, r, &req); err != nil {
			s.Log.Warn("enrollment refused", "code", err.Code, "reason", err.Message, "source", SourceOf(r.RemoteAddr))
			writeErr(w, err)
			return
		}
		resp, err := s.Enroll(r.Context(), req, SourceOf(r.RemoteAddr))
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, resp)
	})
	mux.HandleFunc("POST /api/v1/heartbeat", func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			writeErr(w, refuse(401, CodeUnauthorized, "a heartbeat needs the connector's client certificate (mutual TLS) issued at enrollment"))
			return
		}
		var req HeartbeatRequest
		if err := decode(w, r, &req); err != nil {
			writeErr(w, err)
			return
		}
		resp, err := s.Heartbeat(r.Context(), pki.SerialHex(r.TLS.VerifiedChains[0][0]), req)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, resp)
	})

	mux.HandleFunc("GET /api/v1/groups", admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		return s.Groups(r.Context())
	}))
	mux.HandleFunc("POST /api/v1/groups", admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		var sp GroupSpec
		if err := decode(w, r, &sp); err != nil {
			return nil, err
		}
		return s.CreateGroup(r.Context(), sp)
	}))
	mux.HandleFunc("GET /api/v1/groups/{name}", admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		return s.Group(r.Context(), r.PathValue("name"))
	}))
	mux.HandleFunc("PATCH /api/v1/groups/{name}", admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		var sp GroupSpec
		if err := decode(w, r, &sp); err != nil {
			return nil, err
		}
		sp.Name = r.PathValue("name")
		return s.EditGroup(r.Context(), sp)
	}))
	mux.HandleFunc("DELETE /api/v1/groups/{name}", admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		force, _ := strconv.ParseBool(r.URL.Query().Get("force"))
		return map[string]string{"deleted": r.PathValue("name")}, s.DeleteGroup(r.Context(), r.PathValue("name"), force)
	}))

	mux.HandleFunc("GET /api/v1/keys", admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		q := r.URL.Query()
		return s.Keys(r.Context(), store.KeyFilter{Group: q.Get("group"), Name: q.Get("name"), State: q.Get("state")})
	}))
	mux.HandleFunc("POST /api/v1/keys", admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		var sp KeySpec
		if err := decode(w, r, &sp); err != nil {
			return nil, err
		}
		return s.CreateKey(r.Context(), sp)
	}))
	mux.HandleFunc("GET /api/v1/keys/{name}", admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		return s.Key(r.Context(), r.PathValue("name"))
	}))
	mux.HandleFunc("PATCH /api/v1/keys/{name}", admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		var body struct {
			MaxUses *int64 `json:"max_uses"`
		}
		if err := decode(w, r, &body); err != nil {
			return nil, err
		}
		if body.MaxUses == nil {
			return nil, refuse(400, CodeBadRequest, "nothing to change; send max_uses")
		}
		return s.SetMaxUses(r.Context(), r.PathValue("name"), *body.MaxUses)
	}))
	mux.HandleFunc("DELETE /api/v1/keys/{name}", admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		return map[string]string{"deleted": r.PathValue("name")}, s.DeleteKey(r.Context(), r.PathValue("name"))
	}))
	mux.HandleFunc("POST /api/v1/keys/{name}/reveal", admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		return s.RevealKey(r.Context(), r.PathValue("name"))
	}))
	mux.HandleFunc("POST /api/v1/keys/{name}/regenerate", admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		return s.RegenerateKey(r.Context(), r.PathValue("name"))
	}))
	mux.HandleFunc("POST /api/v1/keys/{name}/revoke", admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		return s.RevokeKey(r.Context(), r.PathValue("name"))
	}))

	mux.HandleFunc("GET /api/v1/connectors", admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		return s.Connectors(r.Context(), r.URL.Query().Get("group"))
	}))
	mux.HandleFunc("GET /api/v1/connectors/{name}", admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		return s.Connector(r.Context(), r.PathValue("name"))
	}))
	mux.HandleFunc("POST /api/v1/connectors/{name}/revoke", admin(func(w http.ResponseWriter, r *http.Request) (any, error) {
		return s.RevokeConnector(r.Context(), r.PathValue("name"))
	}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, refuse(404, CodeNotFound, "no API at %s %s; see the controlplane package documentation for the routes", r.Method, r.URL.Path))
	})
	return mux
}

func decode(w http.ResponseWriter, r *http.Request, v any) *Error {
	r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return refuse(413, CodeTooLarge, "the request body is larger than %d bytes; send only the JSON fields of the API", MaxBody)
		}
		if errors.Is(err, io.EOF) {
			return refuse(400, CodeBadRequest, "the request body is empty; send a JSON object")
		}
		return refuse(400, CodeBadRequest, "the request body is not valid JSON for this API: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return refuse(400, CodeBadRequest, "the request body has data after the JSON object; send exactly one object")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = refuse(500, CodeInternal, "the control plane failed: %v", err)
	}
	if e.Status == http.StatusRequestEntityTooLarge {
		w.Header().Set("Connection", "close")
	}
	writeJSON(w, e.Status, e)
}
