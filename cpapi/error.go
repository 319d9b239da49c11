package cpapi

import (
	"encoding/json"
	"errors"
)

// Refusal codes: the "error" field of a refusal. Scripts branch on them, so
// they never change meaning.
const (
	CodeBadRequest       = "bad_request"        // malformed JSON, unknown or missing fields, invalid values
	CodeTooLarge         = "too_large"          // request body over the limit
	CodeInvalidKey       = "invalid_key"        // malformed key, unknown key id, or an old secret
	CodeWrongHost        = "wrong_host"         // the key names another control plane (host or CA pin)
	CodeKeyExhausted     = "key_exhausted"      // use_count reached max_uses
	CodeKeyRevoked       = "key_revoked"        // the key was revoked
	CodeKeyExpired       = "key_expired"        // the key's expiry has passed
	CodeBadCSR           = "bad_csr"            // the CSR is unusable
	CodeRateLimited      = "rate_limited"       // too many failed enrollments from one address
	CodeBlocked          = "blocked"            // the connector's hardware fingerprint changed
	CodeRevoked          = "connector_revoked"  // the connector was revoked or deleted
	CodeUnauthorized     = "unauthorized"       // no or wrong admin token, or no client certificate
	CodeNotFound         = "not_found"          // no such route, group, key or connector
	CodeMethodNotAllowed = "method_not_allowed" // the route exists, not with this method (see the Allow header)
	CodeExists           = "exists"             // the name is taken
	CodeConflict         = "conflict"           // the change conflicts with the current state
	CodeInternal         = "internal"           // the server failed; see its log
	CodeUnhealthy        = "unhealthy"          // GET /healthz: the database does not answer
	CodeNoReleaseKey     = "no_release_key"     // publishing a release: the server trusts no release key (outpost server --release-key)
	CodeBadBundle        = "bad_bundle"         // publishing a release: not a bundle, not signed by a trusted key, or damaged
)

// Error is a refusal: a stable code scripts branch on and a sentence for a
// person saying what to do. It is the body of every non-200 answer,
// {"error": CODE, "message": SENTENCE}.
type Error struct {
	Code    string `json:"error"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message + " (" + e.Code + ")" }

// ParseError reads the body of a non-200 answer as a refusal; ok is false
// when it is not one (no JSON, or no code), e.g. a proxy's error page.
func ParseError(body []byte) (e *Error, ok bool) {
	e = &Error{}
	if json.Unmarshal(body, e) != nil || e.Code == "" {
		return nil, false
	}
	return e, true
}

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, &cpapi.Error{Code: cpapi.CodeKeyExhausted}) matches any
// refusal of that code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// IsCode reports whether err is or wraps an *Error with code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}
