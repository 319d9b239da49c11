// Package provkey defines the provisioning key: the text an admin pastes into
// an appliance so that it can enroll with the control plane.
//
// A key reads VERSION|HOST[:PORT]|BLOB. BLOB is standard base64 of a binary
// record holding a public key id, a 256-bit secret, the SHA-256 pin of the
// control plane CA's public key and a checksum over everything before it
// (host included), so damage is caught offline.
//
// Parse reads the exact text of a key. Check diagnoses text as a person
// pasted it: it names every damaged character with its line, column and
// Unicode name, repairs only what is safe (quotes around the key, one final
// LF or CRLF, wrapping inside the blob) and says what to do about the rest.
//
// The full text of a key is a secret. Key's String and GoString print the
// redacted form (Redacted), so %v, %s and %#v are safe in logs and errors;
// only Reveal returns the text, for the places where an admin asked for it.
// This package does not talk to the network or store keys.
package provkey

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
)

// Version is the only key format version this package writes and reads.
const Version = 1

// Sizes of the blob's fields.
const (
	idLen       = 8
	secretLen   = 32
	pinLen      = 32
	checksumLen = 4
	blobLen     = 1 + idLen + secretLen + pinLen + checksumLen
)

// ID is a key's public identifier, safe to log.
type ID [idLen]byte

// String renders the id as 16 lowercase hex digits.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// ParseID parses the 16-hex-digit form of an ID.
func ParseID(s string) (ID, error) {
	var id ID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != idLen {
		return id, fmt.Errorf("key id %q: want %d hex digits", s, 2*idLen)
	}
	copy(id[:], b)
	return id, nil
}

// Pin is the SHA-256 of a CA certificate's SubjectPublicKeyInfo.
type Pin [pinLen]byte

// String renders the pin as "sha256:" and 64 hex digits.
func (p Pin) String() string { return "sha256:" + hex.EncodeToString(p[:]) }

// PinOf returns the pin of cert's public key.
func PinOf(cert *x509.Certificate) Pin { return sha256.Sum256(cert.RawSubjectPublicKeyInfo) }

// Matches reports whether cert's public key has this pin, in constant time.
func (p Pin) Matches(cert *x509.Certificate) bool {
	q := PinOf(cert)
	return subtle.ConstantTimeCompare(p[:], q[:]) == 1
}

// Key is a parsed provisioning key.
type Key struct {
	Version int
	Host    string // host or host:port of the control plane
	ID      ID
	Secret  [secretLen]byte
	Pin     Pin
}

// Generate makes a new key for the control plane at host whose CA has pin.
// rand defaults to crypto/rand when nil.
func Generate(host string, pin Pin, r io.Reader) (Key, error) {
	if err := ValidateHost(host); err != nil {
		return Key{}, err
	}
	if r == nil {
		r = rand.Reader
	}
	k := Key{Version: Version, Host: host, Pin: pin}
	if _, err := io.ReadFull(r, k.ID[:]); err != nil {
		return Key{}, fmt.Errorf("generate key id: %w", err)
	}
	if _, err := io.ReadFull(r, k.Secret[:]); err != nil {
		return Key{}, fmt.Errorf("generate key secret: %w", err)
	}
	return k, nil
}

// WithSecret returns a copy of k with a new secret and the same identity, as
// "regenerate" does.
func (k Key) WithSecret(r io.Reader) (Key, error) {
	if r == nil {
		r = rand.Reader
	}
	if _, err := io.ReadFull(r, k.Secret[:]); err != nil {
		return Key{}, fmt.Errorf("generate key secret: %w", err)
	}
	return k, nil
}

func (k Key) prefix() string { return strconv.Itoa(k.Version) + "|" + k.Host + "|" }

func (k Key) blob() []byte {
	b := make([]byte, 0, blobLen)
	b = append(b, byte(k.Version))
	b = append(b, k.ID[:]...)
	b = append(b, k.Secret[:]...)
	b = append(b, k.Pin[:]...)
	sum := checksum(k.prefix(), b)
	return append(b, sum[:]...)
}

func checksum(prefix string, body []byte) [checksumLen]byte {
	h := sha256.New()
	h.Write([]byte(prefix))
	h.Write(body)
	var out [checksumLen]byte
	copy(out[:], h.Sum(nil))
	return out
}

// Reveal returns the key's full text. It is a secret: call it only where an
// admin explicitly asked for the key.
func (k Key) Reveal() string {
	return k.prefix() + base64.StdEncoding.EncodeToString(k.blob())
}

// Redacted returns a form safe for logs: version, host, the first six
// characters of the blob and the key id.
func (k Key) Redacted() string {
	return fmt.Sprintf("%s%s…(redacted, id %s)", k.prefix(), base64.StdEncoding.EncodeToString(k.blob())[:6], k.ID)
}

// String returns the redacted form, so that a key that slips into a log line
// or an error does not leak.
func (k Key) String() string { return k.Redacted() }

// GoString keeps %#v redacted too.
func (k Key) GoString() string { return "provkey.Key{" + k.Redacted() + "}" }

// SecretHash returns SHA-256 of the secret, what a server stores instead of
// the secret.
func (k Key) SecretHash() [32]byte { return sha256.Sum256(k.Secret[:]) }

// SecretMatches reports in constant time whether k's secret has hash h.
func (k Key) SecretMatches(h []byte) bool {
	s := k.SecretHash()
	return subtle.ConstantTimeCompare(s[:], h) == 1
}

// Errors callers branch on.
var (
	ErrFormat   = errors.New("malformed provisioning key")
	ErrVersion  = errors.New("unknown provisioning key version")
	ErrChecksum = errors.New("provisioning key checksum mismatch")
)

// Parse parses the exact text of a key, with no normalisation. Use Check for
// text that came from a person.
func Parse(text string) (Key, error) {
	parts := strings.Split(text, "|")
	if len(parts) != 3 {
		return Key{}, fmt.Errorf("%w: want 3 fields separated by '|', found %d", ErrFormat, len(parts))
	}
	v, err := strconv.Atoi(parts[0])
	if err != nil || parts[0] != strconv.Itoa(v) {
		return Key{}, fmt.Errorf("%w: version field is not a number", ErrFormat)
	}
	if v != Version {
		return Key{}, fmt.Errorf("%w %d: this outpost reads version %d", ErrVersion, v, Version)
	}
	if err := ValidateHost(parts[1]); err != nil {
		return Key{}, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(parts[2])
	if err != nil {
		return Key{}, fmt.Errorf("%w: key blob is not valid base64", ErrFormat)
	}
	if len(raw) != blobLen {
		return Key{}, fmt.Errorf("%w: key blob is %d bytes, want %d (truncated or extended)", ErrChecksum, len(raw), blobLen)
	}
	if int(raw[0]) != v {
		return Key{}, fmt.Errorf("%w: blob version %d does not match version field %d", ErrChecksum, raw[0], v)
	}
	body, sum := raw[:blobLen-checksumLen], raw[blobLen-checksumLen:]
	want := checksum(parts[0]+"|"+parts[1]+"|", body)
	if !bytes.Equal(sum, want[:]) {
		return Key{}, fmt.Errorf("%w: the key was altered or belongs to another host", ErrChecksum)
	}
	k := Key{Version: v, Host: parts[1]}
	off := 1
	off += copy(k.ID[:], raw[off:])
	off += copy(k.Secret[:], raw[off:])
	copy(k.Pin[:], raw[off:])
	return k, nil
}

// ValidateHost checks a HOST[:PORT] field: a DNS name or IP literal and an
// optional port 1–65535.
func ValidateHost(hostport string) error {
	if hostport == "" {
		return errors.New("host is empty")
	}
	if p := hostProblem(hostport); p != "" {
		return fmt.Errorf("host %q: %s", hostport, p)
	}
	return nil
}

// hostProblem says what is wrong with a HOST[:PORT] field without repeating
// it, or returns "".
func hostProblem(hostport string) string {
	if hostport == "" {
		return "host is empty"
	}
	host, port := hostport, ""
	if strings.HasPrefix(hostport, "[") {
		end := strings.Index(hostport, "]")
		if end < 0 {
			return "missing ']'"
		}
		host, port = hostport[1:end], strings.TrimPrefix(hostport[end+1:], ":")
		if hostport[end+1:] != "" && !strings.HasPrefix(hostport[end+1:], ":") {
			return "unexpected text after ']'"
		}
		if a, err := netip.ParseAddr(host); err != nil || !a.Is6() || a.Zone() != "" {
			return "brackets hold an IPv6 address, and this is not one"
		}
	} else if strings.Count(hostport, ":") > 1 {
		return "an IPv6 address must be in brackets, as in [2001:db8::1]:443"
	} else if i := strings.LastIndex(hostport, ":"); i >= 0 {
		host, port = hostport[:i], hostport[i+1:]
	}
	if port != "" || strings.HasSuffix(hostport, ":") {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || port != strconv.Itoa(n) {
			return "port must be a number from 1 to 65535"
		}
	}
	if strings.HasPrefix(hostport, "[") { // IPv6 literal, checked above
		return ""
	}
	if len(host) > 253 {
		return "longer than 253 characters"
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 {
			return "empty or over-long DNS label"
		}
		for i, c := range label {
			ok := c == '-' && i > 0 && i < len(label)-1 ||
				c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
			if !ok {
				return fmt.Sprintf("%q is not allowed in a host name", c)
			}
		}
	}
	return ""
}
