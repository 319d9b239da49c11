package console_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/chromedp"
	"github.com/outpost-appliance/outpost/console"
	"github.com/outpost-appliance/outpost/controlplane"
	"github.com/outpost-appliance/outpost/controlplane/store"
	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/internal/cptest"
	"github.com/outpost-appliance/outpost/internal/testtool"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "write the console's screenshots to docs/console/")

type env struct {
	srv   *controlplane.Server
	url   string
	token string
	http  *http.Client
}

func newEnv(t *testing.T) *env {
	cp := cptest.Start(t, cptest.Options{Mount: func(srv *controlplane.Server, dataDir string) {
		con, err := console.New(console.Config{Service: srv.Service, Token: srv.AdminToken, PasswordFile: filepath.Join(dataDir, console.PasswordFile),
			ServerURL: srv.AdminURL, PollInterval: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		srv.Handler = console.Mount(srv.Handler, con)
	}})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(cp.Config.CA))
	return &env{srv: cp.Server, url: "https://" + cp.Addr, token: cp.AdminToken,
		http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
}

// enroll enrolls a new connector through the real enrollment API.
func (e *env) enroll(t *testing.T, key, fp string) (cpapi.EnrollResponse, *cpapi.Error) {
	t.Helper()
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "appliance"}}, priv)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(cpapi.EnrollRequest{Key: key, CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), Fingerprint: fp, Nonce: "n-" + fp})
	resp, err := e.http.Post(e.url+cpapi.PathEnroll, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		var ce cpapi.Error
		json.NewDecoder(resp.Body).Decode(&ce)
		return cpapi.EnrollResponse{}, &ce
	}
	var out cpapi.EnrollResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out, nil
}

func newBrowser(t *testing.T) context.Context {
	path := testtool.Path(t, "chromium")
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true), chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("ignore-certificate-errors", true), // the server's own CA
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatal(err)
	}
	return ctx
}

// step runs browser actions with a timeout, failing the test on error.
func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, actions...); err != nil {
		body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
		t.Fatalf("%s: %v; the page:\n%s", what, err, body)
	}
}

func eval[T any](t *testing.T, ctx context.Context, js string, opts ...chromedp.EvaluateOption) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, chromedp.Evaluate[T](js, opts...))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(t.ArtifactDir(), name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
	if *updateScreenshots {
		if err := os.WriteFile(filepath.Join("..", "docs", "console", name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func clipboard(t *testing.T, ctx context.Context) string {
	t.Helper()
	return eval[string](t, ctx, `navigator.clipboard.readText()`, chromedp.EvalAwaitPromise)
}

const xssLocation = `<script>window.pwned=1</script><img src=x onerror="window.pwned=2">Melbourne DC`

func TestConsoleInChromium(t *testing.T) {
	e := newEnv(t)
	ctx := newBrowser(t)
	c := chromedp.FromContext(ctx)
	origin := e.url
	if _, err := cdp.Call(ctx, c.Browser, browser.SetPermission, browser.SetPermissionParams{
		Permission: &browser.PermissionDescriptor{Name: "clipboard-read"}, Setting: browser.PermissionSettingGranted, Origin: origin}); err != nil {
		t.Fatal(err)
	}
	if _, err := cdp.Call(ctx, c.Browser, browser.SetPermission, browser.SetPermissionParams{
		Permission: &browser.PermissionDescriptor{Name: "clipboard-write", AllowWithoutSanitization: true}, Setting: browser.PermissionSettingGranted, Origin: origin}); err != nil {
		t.Fatal(err)
	}

	// No session: sign-in, keeping the page asked for.
	step(t, ctx, "open keys", chromedp.Navigate(e.url+"/keys?q=mel"), chromedp.WaitVisible(chromedp.CSS("#secret")))
	loc := eval[string](t, ctx, `location.pathname + location.search`)
	if loc != "/signin?next=%2Fkeys%3Fq%3Dmel" {
		t.Fatalf("no session: at %s, want the sign-in page keeping /keys?q=mel", loc)
	}
	screenshot(t, ctx, "signin")
	// A wrong token: no detail.
	step(t, ctx, "wrong token", chromedp.SendKeys(chromedp.CSS("#secret"), "not-the-token"), chromedp.Submit(chromedp.CSS("#secret")),
		chromedp.WaitVisible(chromedp.CSS(".error")))
	if msg := eval[string](t, ctx, `document.querySelector(".error").textContent`); msg != "Sign-in failed. Enter the admin token or the console password." {
		t.Fatalf("wrong token answered %q", msg)
	}
	step(t, ctx, "sign in", chromedp.SendKeys(chromedp.CSS("#secret"), e.token), chromedp.Submit(chromedp.CSS("#secret")),
		chromedp.WaitVisible(chromedp.CSS("input#q")))
	if loc := eval[string](t, ctx, `location.pathname + location.search`); loc != "/keys?q=mel" {
		t.Fatalf("after sign-in at %s, want /keys?q=mel", loc)
	}

	// The wizard: a new group (with script in its location) and a new key.
	step(t, ctx, "wizard 1", chromedp.Navigate(e.url+"/add"), chromedp.WaitVisible(chromedp.CSS("#key_new")))
	screenshot(t, ctx, "wizard-1-key")
	step(t, ctx, "wizard 2", chromedp.Click(chromedp.CSS("button[name=next]")), chromedp.WaitVisible(chromedp.CSS("#signing_ca")))
	screenshot(t, ctx, "wizard-2-signing")
	step(t, ctx, "wizard 3", chromedp.Click(chromedp.CSS("button[name=next]")), chromedp.WaitVisible(chromedp.CSS("#group")),
		chromedp.SendKeys(chromedp.CSS("#group"), "melbourne"), chromedp.SetValue(chromedp.CSS("#location"), xssLocation),
		chromedp.SetValue(chromedp.CSS("#day"), "sat"), chromedp.SetValue(chromedp.CSS("#hour"), "1"))
	screenshot(t, ctx, "wizard-3-group")
	step(t, ctx, "wizard 4", chromedp.Click(chromedp.CSS("button[name=next]")), chromedp.WaitVisible(chromedp.CSS("#key_name")),
		chromedp.SetValue(chromedp.CSS("#key_name"), "Melbourne"), chromedp.SetValue(chromedp.CSS("#max_uses"), "2"))
	screenshot(t, ctx, "wizard-4-details")
	step(t, ctx, "wizard 5", chromedp.Click(chromedp.CSS("button[name=next]")), chromedp.WaitVisible(chromedp.CSS("dl.review")))
	screenshot(t, ctx, "wizard-5-review")
	step(t, ctx, "wizard 6", chromedp.Click(chromedp.CSS("button[name=next]")), chromedp.WaitVisible(chromedp.CSS("#keytext")))
	screenshot(t, ctx, "wizard-6-deploy")
	key := eval[string](t, ctx, `document.getElementById("keytext").value`)
	kt, err := e.srv.Service.RevealKey(context.Background(), "Melbourne")
	if err != nil || kt.Text != key || kt.Group != "melbourne" || kt.MaxUses != 2 {
		t.Fatalf("the wizard made %+v (%v); the page shows %q", kt, err, key)
	}
	page := eval[string](t, ctx, `document.body.innerText`)
	for _, want := range []string{"outpost deploy --ova outpost-connector.ova --key-file Melbourne.key --name Melbourne", "-fw_cfg name=opt/outpost/config", "Provisioning key"} {
		if !strings.Contains(page, want) {
			t.Errorf("step 6 lacks %q", want)
		}
	}
	step(t, ctx, "copy on step 6", chromedp.Click(chromedp.CSS("button.copy")), chromedp.WaitVisible(chromedp.CSS(".copied")))
	if got := clipboard(t, ctx); got != key {
		t.Fatalf("clipboard after Copy on step 6 = %q, want the key", got)
	}

	// Copy in the keys table.
	eval[bool](t, ctx, `navigator.clipboard.writeText("").then(() => true)`, chromedp.EvalAwaitPromise)
	step(t, ctx, "keys", chromedp.Navigate(e.url+"/keys"), chromedp.WaitVisible(chromedp.CSS(`tr[data-key=Melbourne] button.copy`)),
		chromedp.Click(chromedp.CSS(`tr[data-key=Melbourne] button.copy`)))
	waitFor(t, ctx, `document.querySelector("tr[data-key=Melbourne] .copied").textContent === "Copied"`)
	if got := clipboard(t, ctx); got != key {
		t.Fatalf("clipboard after Copy in the table = %q, want the key", got)
	}

	// Use the key up through the enrollment API: Copy is disabled, with the warning.
	for i := 1; i <= 2; i++ {
		if _, ce := e.enroll(t, key, fmt.Sprintf("mac=00:50:56:00:00:0%d;uuid=u%d", i, i)); ce != nil {
			t.Fatalf("enroll %d: %v", i, ce)
		}
	}
	step(t, ctx, "keys used up", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`tr[data-key=Melbourne] .warn`)))
	if !eval[bool](t, ctx, `document.querySelector("tr[data-key=Melbourne] button.copy").disabled`) {
		t.Fatal("Copy is enabled on a used-up key")
	}
	if w := eval[string](t, ctx, `document.querySelector("tr[data-key=Melbourne] .warn").textContent`); !strings.Contains(w, "⚠") || !strings.Contains(w, "Used 2 of 2") {
		t.Fatalf("warning %q", w)
	}
	step(t, ctx, "expand", chromedp.Click(chromedp.CSS(`tr[data-key=Melbourne] summary`)))
	screenshot(t, ctx, "keys-used-up")

	// Edit the maximum: Copy is enabled again.
	step(t, ctx, "edit max", chromedp.SetValue(chromedp.CSS(`#max-Melbourne`), "3"), chromedp.Click(chromedp.CSS(`form[action="/keys/Melbourne/max"] button`)),
		chromedp.WaitVisible(chromedp.CSS(".flash")))
	if eval[bool](t, ctx, `document.querySelector("tr[data-key=Melbourne] button.copy").disabled`) {
		t.Fatal("Copy still disabled after raising the maximum")
	}
	screenshot(t, ctx, "keys")

	// A stale form: the key is regenerated after the page was loaded.
	if _, err := e.srv.Service.RegenerateKey(context.Background(), "Melbourne"); err != nil {
		t.Fatal(err)
	}
	step(t, ctx, "stale edit", chromedp.SetValue(chromedp.CSS(`#max-Melbourne`), "7"), chromedp.Click(chromedp.CSS(`form[action="/keys/Melbourne/max"] button`)),
		chromedp.WaitVisible(chromedp.CSS(".error")))
	if msg := eval[string](t, ctx, `document.querySelector(".error").textContent`); !strings.Contains(msg, "regenerated since this page was loaded, so nothing was changed") {
		t.Fatalf("stale form answered %q", msg)
	}
	if k, _ := e.srv.Service.Key(context.Background(), "Melbourne"); k.MaxUses != 3 {
		t.Fatalf("a stale form changed the maximum to %d", k.MaxUses)
	}
	if _, ce := e.enroll(t, key, "mac=00:50:56:00:00:09;uuid=u9"); ce == nil || ce.Code != cpapi.CodeInvalidKey {
		t.Fatalf("the key from before the regeneration enrolled (%v)", ce)
	}

	// Regenerate from the page: the new text is shown, the old one refused.
	step(t, ctx, "regenerate", chromedp.Navigate(e.url+"/keys"), chromedp.Click(chromedp.CSS(`form[action="/keys/Melbourne/regenerate"] button`)),
		chromedp.WaitVisible(chromedp.CSS("#keytext")))
	newKey := eval[string](t, ctx, `document.getElementById("keytext").value`)
	screenshot(t, ctx, "key-regenerated")
	if cur, _ := e.srv.Service.RevealKey(context.Background(), "Melbourne"); newKey != cur.Text || newKey == key {
		t.Fatal("the regenerated page does not show the current key")
	}
	if _, ce := e.enroll(t, kt.Text, "mac=00:50:56:00:00:08;uuid=u8"); ce == nil || ce.Code != cpapi.CodeInvalidKey {
		t.Fatalf("the old key text enrolled after Regenerate (%v)", ce)
	}

	// A change without the CSRF token is refused, and changes nothing.
	code := eval[float64](t, ctx, `fetch("/keys/Melbourne/revoke", {method: "POST", body: new URLSearchParams({generation: "2"})}).then(r => r.status)`, chromedp.EvalAwaitPromise)
	if code != 403 {
		t.Fatalf("POST without CSRF token: status %v, want 403", code)
	}
	if k, _ := e.srv.Service.Key(context.Background(), "Melbourne"); k.State != cpapi.KeyActive {
		t.Fatal("a POST without the CSRF token revoked the key")
	}

	// Script in a group's location renders as text.
	step(t, ctx, "groups", chromedp.Navigate(e.url+"/groups"), chromedp.WaitVisible(chromedp.CSS("td.location")))
	if got := eval[string](t, ctx, `document.querySelector("td.location").textContent`); got != xssLocation {
		t.Fatalf("location shows %q", got)
	}
	if eval[bool](t, ctx, `window.pwned !== undefined || document.querySelector("main img, main script") !== null`) {
		t.Fatal("script in a group's location ran or became markup")
	}
	// The group's release and rollout: none published yet.
	if got := eval[string](t, ctx, `document.querySelector("td.rollout").textContent`); got != "latest · idle: no release is published" {
		t.Errorf("release column shows %q, want \"latest · idle: no release is published\"", got)
	}
	// A duplicate name: the field is named.
	step(t, ctx, "duplicate group", chromedp.SendKeys(chromedp.CSS("#name"), "melbourne"), chromedp.Submit(chromedp.CSS("#name")),
		chromedp.WaitVisible(chromedp.CSS("#name-error")))
	if msg := eval[string](t, ctx, `document.getElementById("name-error").textContent`); !strings.HasPrefix(msg, "Name: a group named \"melbourne\" already exists") {
		t.Fatalf("duplicate group name answered %q", msg)
	}
	screenshot(t, ctx, "groups")
	step(t, ctx, "group edit", chromedp.Navigate(e.url+"/groups/melbourne/edit"), chromedp.WaitVisible(chromedp.CSS("#location")))
	screenshot(t, ctx, "group-edit")

	// Connectors: script in a reported version renders as text; the page
	// updates without a reload.
	e.srv.Service.Store.Heartbeat("Melbourne-1", store.Beat{At: e.srv.Service.Now(), Version: `<script>window.pwned=3</script>1.0`, Addresses: []string{"192.0.2.10/24"}, Skew: 0.25})
	step(t, ctx, "connectors", chromedp.Navigate(e.url+"/connectors"), chromedp.WaitVisible(chromedp.CSS(`tr[data-connector="Melbourne-1"]`)))
	if got := eval[string](t, ctx, `document.querySelector('tr[data-connector="Melbourne-1"] .version').textContent`); got != `<script>window.pwned=3</script>1.0` {
		t.Fatalf("version shows %q", got)
	}
	if st := eval[string](t, ctx, `document.querySelector('tr[data-connector="Melbourne-1"] .state').textContent`); st != cpapi.HealthHealthy {
		t.Fatalf("Melbourne-1 state %q", st)
	}
	cur, _ := e.srv.Service.RevealKey(context.Background(), "Melbourne")
	if _, ce := e.enroll(t, cur.Text, "mac=00:50:56:00:00:03;uuid=u3"); ce != nil {
		t.Fatal(ce)
	}
	eval[bool](t, ctx, `window.marker = 1; true`)
	waitFor(t, ctx, `document.querySelector('tr[data-connector="Melbourne-3"]') !== null`)
	if !eval[bool](t, ctx, `window.marker === 1 && window.pwned === undefined`) {
		t.Fatal("the page reloaded, or the version's script ran")
	}
	screenshot(t, ctx, "connectors")

	// Delete asks first.
	step(t, ctx, "delete confirm", chromedp.Navigate(e.url+"/keys/Melbourne/delete"), chromedp.WaitVisible(chromedp.CSS("#force")))
	screenshot(t, ctx, "key-delete")

	// Sign out: the session is gone.
	step(t, ctx, "sign out", chromedp.Navigate(e.url+"/keys"), chromedp.Click(chromedp.CSS(".signout button")), chromedp.WaitVisible(chromedp.CSS("#secret")),
		chromedp.Navigate(e.url+"/connectors"), chromedp.WaitVisible(chromedp.CSS("#secret")))
}

func waitFor(t *testing.T, ctx context.Context, js string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !eval[bool](t, ctx, js) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", js)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
