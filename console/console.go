package console

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/outpost-appliance/outpost/controlplane"
	"github.com/outpost-appliance/outpost/cpapi"
	"golang.org/x/crypto/bcrypt"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Session lifetimes: a session ends after IdleTimeout without a request,
// and in any case MaxAge after sign-in.
const (
	IdleTimeout = 30 * time.Minute
	MaxAge      = 12 * time.Hour
)

// Sign-in failures allowed from one address per minute; then every
// attempt is refused, right or wrong, until the minute has passed.
const maxSignInFailures = 5

const (
	sessionCookie = "outpost_session"
	signinCookie  = "outpost_signin" // double-submit token of the sign-in form
)

// Config configures a console.
type Config struct {
	Service *controlplane.Service
	// Token is the admin token (admin.conf's); it always signs in.
	Token string
	// PasswordFile holds the bcrypt hash written by SetPassword; it is read
	// at each sign-in, so 'outpost admin passwd' needs no restart. Missing:
	// only the token signs in.
	PasswordFile string
	// ServerURL is https://HOST[:PORT] as admins reach the server, for the
	// instructions shown with a key.
	ServerURL string
	Log       *slog.Logger
	Now       func() time.Time // sessions and rate limits; nil: time.Now
	// PollInterval is how often the Connectors page refreshes its rows;
	// zero: 5 s.
	PollInterval time.Duration
}

// Console serves the admin web console.
type Console struct {
	cfg   Config
	svc   *controlplane.Service
	log   *slog.Logger
	now   func() time.Time
	pages map[string]*template.Template
	mux   *http.ServeMux

	mu       sync.Mutex
	sessions map[string]*session // by the SHA-256 of the cookie value
	failures map[string][]time.Time
}

type session struct {
	csrf    string
	created time.Time
	seen    time.Time
	flash   string
}

// expired says whether the session has ended by IdleTimeout or MaxAge.
func (s *session) expired(now time.Time) bool {
	return now.Sub(s.seen) > IdleTimeout || now.Sub(s.created) > MaxAge
}

// New makes a console for cfg.
func New(cfg Config) (*Console, error) {
	if cfg.Service == nil || cfg.Token == "" {
		return nil, errors.New("console: a service and the admin token are required")
	}
	c := &Console{cfg: cfg, svc: cfg.Service, log: cfg.Log, now: cfg.Now, sessions: map[string]*session{}, failures: map[string][]time.Time{}}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.cfg.PollInterval <= 0 {
		c.cfg.PollInterval = 5 * time.Second
	}
	if err := c.parse(); err != nil {
		return nil, err
	}
	c.routes()
	return c, nil
}

// Mount serves api at /api/ and /healthz, and the console everywhere else.
func Mount(api http.Handler, c *Console) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/api/", api)
	mux.Handle(cpapi.PathHealthz, api)
	mux.Handle("/", c)
	return mux
}

// ServeHTTP serves the console with its security headers.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Strict-Transport-Security", "max-age=31536000")
	c.mux.ServeHTTP(w, r)
}

func (c *Console) parse() error {
	c.pages = map[string]*template.Template{}
	funcs := template.FuncMap{
		"ts":        c.ts,
		"ago":       c.ago,
		"day":       func(d int) string { return dayNames[d%7] },
		"hours":     hours,
		"days":      func() []string { return cpapi.Days },
		"dayName":   func(d string) string { n, _ := dayName(d); return n },
		"windowEnd": func(h int) int { return (h + 4) % 24 },
		"used":      func(k cpapi.KeyInfo) bool { return k.UseCount >= k.MaxUses },
		"left":      func(k cpapi.KeyInfo) int64 { return max(k.MaxUses-k.UseCount, 0) },
		"skew":      skew,
		"healthClass": func(h string) string {
			return "h-" + strings.ReplaceAll(h, " ", "-")
		},
		"add":   func(a, b int) int { return a + b },
		"step6": func(any) stepView { return stepView{Step: 6} },
	}
	pages, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return err
	}
	for _, p := range pages {
		name := strings.TrimSuffix(strings.TrimPrefix(p, "templates/"), ".html")
		if partials[name] {
			continue
		}
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/groupform.html", "templates/wizsteps.html", p)
		if err != nil {
			return err
		}
		c.pages[name] = t
	}
	return nil
}

// partials are templates included by pages, not pages.
var partials = map[string]bool{"layout": true, "groupform": true, "wizsteps": true}

// stepView shows the wizard's steps with one current.
type stepView struct{ Step int }

func (stepView) StepNames() []string { return wizardSteps }

// dayNames are the full names of cpapi.Days, in their order.
var dayNames = []string{"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"}

// dayName is the full name of the window day d ("sun"), and whether d is
// one of cpapi.Days.
func dayName(d string) (string, bool) {
	i := slices.Index(cpapi.Days, d)
	if i < 0 {
		return "", false
	}
	return dayNames[i], true
}

// hours are the window's possible start hours, 0 to 23.
func hours() []int {
	h := make([]int, 24)
	for i := range h {
		h[i] = i
	}
	return h
}

// page is what every template gets.
type page struct {
	Title  string
	Nav    string // the active navigation entry
	CSRF   string
	Flash  string
	Error  string
	Signed bool
	Data   any
}

func (c *Console) render(w http.ResponseWriter, status int, name string, p page) {
	var buf bytes.Buffer
	t := c.pages[name]
	if t == nil {
		http.Error(w, "no page "+name, http.StatusInternalServerError)
		return
	}
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		c.log.Error("console: render", "page", name, "err", err)
		http.Error(w, "the page could not be shown; see the server log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func random() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func sessionKey(v string) string {
	h := sha256.Sum256([]byte(v))
	return string(h[:])
}

// session returns the request's live session, renewing its idle time.
func (c *Console) session(r *http.Request) *session {
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	k := sessionKey(ck.Value)
	s := c.sessions[k]
	if s == nil {
		return nil
	}
	if s.expired(now) {
		delete(c.sessions, k)
		return nil
	}
	s.seen = now
	return s
}

func (c *Console) takeFlash(s *session) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := s.flash
	s.flash = ""
	return f
}

func (c *Console) setFlash(s *session, msg string) {
	c.mu.Lock()
	s.flash = msg
	c.mu.Unlock()
}

// authed wraps a handler that needs a session; a change (any method but
// GET and HEAD) also needs the session's CSRF token in the form field csrf.
func (c *Console) authed(h func(w http.ResponseWriter, r *http.Request, s *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := c.session(r)
		if s == nil {
			if r.Method != http.MethodGet && r.Method != http.MethodHead || r.Header.Get("X-Requested-With") != "" {
				c.render(w, http.StatusUnauthorized, "error", page{Title: "Signed out", Error: "Your session has ended; sign in again. Nothing was changed."})
				return
			}
			http.Redirect(w, r, "/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
			got := r.PostFormValue("csrf")
			if subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) != 1 {
				c.log.Warn("console: change without a valid CSRF token refused", "path", r.URL.Path, "source", controlplane.SourceOf(r.RemoteAddr))
				c.render(w, http.StatusForbidden, "error", page{Title: "Refused", Signed: true, CSRF: s.csrf, Error: "This form did not come from this console session (its security token is missing or old). Nothing was changed; reload the page and try again."})
				return
			}
		}
		h(w, r, s)
	}
}

// safeNext keeps a redirect target on this site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") || strings.HasPrefix(next, "/signin") {
		return "/keys"
	}
	return next
}

type signinData struct{ Next, Form string }

func (c *Console) signinPage(w http.ResponseWriter, r *http.Request) {
	if c.session(r) != nil {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	c.showSignin(w, http.StatusOK, safeNext(r.URL.Query().Get("next")), "")
}

func (c *Console) showSignin(w http.ResponseWriter, status int, next, msg string) {
	form := random()
	http.SetCookie(w, &http.Cookie{Name: signinCookie, Value: form, Path: "/signin", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode, MaxAge: 3600})
	c.render(w, status, "signin", page{Title: "Sign in", Error: msg, Data: signinData{Next: next, Form: form}})
}

// The answer to every failed sign-in: which of token or password was
// tried, and why it failed, is nobody's business but the log's.
const signinFailed = "Sign-in failed. Enter the admin token or the console password."

func (c *Console) signin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	next := safeNext(r.PostFormValue("next"))
	source := controlplane.SourceOf(r.RemoteAddr)
	ck, err := r.Cookie(signinCookie)
	if err != nil || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(r.PostFormValue("form"))) != 1 {
		c.showSignin(w, http.StatusForbidden, next, "The sign-in form was out of date; try again.")
		return
	}
	now := c.now()
	c.mu.Lock()
	var recent []time.Time
	for _, t := range c.failures[source] {
		if now.Sub(t) < time.Minute {
			recent = append(recent, t)
		}
	}
	c.failures[source] = recent
	limited := len(recent) >= maxSignInFailures
	c.mu.Unlock()
	if limited {
		c.log.Warn("console: sign-in rate-limited", "source", source)
		c.showSignin(w, http.StatusTooManyRequests, next, "Too many failed sign-ins from this address; wait a minute and try again.")
		return
	}
	if !c.credentialOK(r.PostFormValue("secret")) {
		c.mu.Lock()
		c.failures[source] = append(c.failures[source], now)
		c.mu.Unlock()
		c.log.Warn("console: sign-in failed", "source", source)
		c.showSignin(w, http.StatusUnauthorized, next, signinFailed)
		return
	}
	v := random()
	c.mu.Lock()
	for k, s := range c.sessions { // drop the expired ones now and then
		if s.expired(now) {
			delete(c.sessions, k)
		}
	}
	c.sessions[sessionKey(v)] = &session{csrf: random(), created: now, seen: now}
	c.mu.Unlock()
	c.log.Info("console: signed in", "source", source)
	http.SetCookie(w, &http.Cookie{Name: signinCookie, Value: "", Path: "/signin", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: v, Path: "/", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode, MaxAge: int(MaxAge / time.Second)})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *Console) credentialOK(secret string) bool {
	if secret == "" {
		return false
	}
	got, want := sha256.Sum256([]byte(secret)), sha256.Sum256([]byte(c.cfg.Token))
	if subtle.ConstantTimeCompare(got[:], want[:]) == 1 {
		return true
	}
	if c.cfg.PasswordFile == "" {
		return false
	}
	hash, err := os.ReadFile(c.cfg.PasswordFile)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			c.log.Error("console: password file", "err", err)
		}
		return false
	}
	return bcrypt.CompareHashAndPassword(bytes.TrimSpace(hash), []byte(secret)) == nil
}

func (c *Console) signout(w http.ResponseWriter, r *http.Request, s *session) {
	c.mu.Lock()
	for k, v := range c.sessions {
		if v == s {
			delete(c.sessions, k)
		}
	}
	c.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	c.showSignin(w, http.StatusOK, "/keys", "")
}
