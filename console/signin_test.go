package console_test

import (
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-appliance/outpost/console"
)

// TestSignInHTTP checks what the browser test does not: security headers,
// the rate limit with one answer, and the console password.
func TestSignInHTTP(t *testing.T) {
	e := newEnv(t)
	jar, _ := cookiejar.New(nil)
	c := *e.http
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	form := func() string {
		resp, err := c.Get(e.url + "/signin")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for _, ck := range jar.Cookies(resp.Request.URL) {
			if ck.Name == "outpost_signin" {
				return ck.Value
			}
		}
		t.Fatal("no sign-in form cookie")
		return ""
	}
	resp, err := c.Get(e.url + "/keys")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if h := resp.Header.Get("Content-Security-Policy"); !strings.Contains(h, "script-src 'self'") || !strings.Contains(h, "frame-ancestors 'none'") || resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("security headers: %v", resp.Header)
	}
	if pw := filepath.Join(t.TempDir(), "p"); console.SetPassword(pw, "short") == nil {
		t.Error("a 5-character password was accepted")
	}
	try := func(secret string) int {
		resp, err := c.PostForm(e.url+"/signin", url.Values{"secret": {secret}, "form": {form()}, "next": {"/groups"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := range 5 {
		if got := try("wrong"); got != http.StatusUnauthorized {
			t.Fatalf("wrong secret %d: status %d", i, got)
		}
	}
	if got := try(e.token); got != http.StatusTooManyRequests {
		t.Fatalf("after 5 failures the right token got %d, want 429", got)
	}
}
