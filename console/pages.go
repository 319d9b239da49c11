package console

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-appliance/outpost/cpapi"
)

func (c *Console) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /signin", c.signinPage)
	m.HandleFunc("POST /signin", c.signin)
	m.HandleFunc("POST /signout", c.authed(c.signout))
	m.HandleFunc("GET /{$}", c.authed(func(w http.ResponseWriter, r *http.Request, s *session) {
		http.Redirect(w, r, "/keys", http.StatusSeeOther)
	}))
	m.HandleFunc("GET /keys", c.authed(c.keysPage))
	m.HandleFunc("POST /keys/{name}/copy", c.authed(c.keyCopy))
	m.HandleFunc("POST /keys/{name}/download", c.authed(c.keyDownload))
	m.HandleFunc("POST /keys/{name}/max", c.authed(c.keyChange("max")))
	m.HandleFunc("POST /keys/{name}/regenerate", c.authed(c.keyChange("regenerate")))
	m.HandleFunc("POST /keys/{name}/revoke", c.authed(c.keyChange("revoke")))
	m.HandleFunc("GET /keys/{name}/delete", c.authed(c.keyDeleteConfirm))
	m.HandleFunc("POST /keys/{name}/delete", c.authed(c.keyChange("delete")))
	m.HandleFunc("GET /groups", c.authed(c.groupsPage))
	m.HandleFunc("POST /groups", c.authed(c.groupCreate))
	m.HandleFunc("GET /groups/{name}/edit", c.authed(c.groupEditPage))
	m.HandleFunc("POST /groups/{name}/edit", c.authed(c.groupEdit))
	m.HandleFunc("GET /groups/{name}/delete", c.authed(c.groupDeleteConfirm))
	m.HandleFunc("POST /groups/{name}/delete", c.authed(c.groupDelete))
	m.HandleFunc("GET /connectors", c.authed(c.connectorsPage))
	m.HandleFunc("GET /connectors/rows", c.authed(c.connectorRows))
	m.HandleFunc("GET /connectors/{name}/revoke", c.authed(c.connectorRevokeConfirm))
	m.HandleFunc("POST /connectors/{name}/revoke", c.authed(c.connectorRevoke))
	m.HandleFunc("GET /add", c.authed(c.wizardStart))
	m.HandleFunc("POST /add", c.authed(c.wizardStep))
	m.HandleFunc("GET /add/done", c.authed(c.wizardDone))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		c.render(w, http.StatusNotFound, "error", page{Title: "Not found", Error: "There is no page at " + r.URL.Path + "."})
	})
	c.mux = m
}

func (c *Console) page(s *session, title, nav string, data any) page {
	return page{Title: title, Nav: nav, CSRF: s.csrf, Flash: c.takeFlash(s), Signed: true, Data: data}
}

// message is the sentence of a service refusal, or a general one.
func message(err error) string {
	var e *cpapi.Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "The server failed; see its log."
}

// fail shows the error page for a refusal or failure of the service.
func (c *Console) fail(w http.ResponseWriter, s *session, err error) {
	c.render(w, status(err), "error", page{Title: "Error", Signed: true, CSRF: s.csrf, Error: message(err)})
}

func status(err error) int {
	switch {
	case cpapi.IsCode(err, cpapi.CodeNotFound):
		return http.StatusNotFound
	case cpapi.IsCode(err, cpapi.CodeExists), cpapi.IsCode(err, cpapi.CodeConflict), cpapi.IsCode(err, cpapi.CodeKeyExhausted):
		return http.StatusConflict
	case cpapi.IsCode(err, cpapi.CodeBadRequest):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

func (c *Console) ts(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func (c *Console) ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := c.svc.Now().Sub(t).Round(time.Second)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%d s ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d.Hours()))
	}
	return fmt.Sprintf("%d days ago", int(d.Hours()/24))
}

func skew(s float64) string {
	if s == 0 {
		return "—"
	}
	if math.Abs(s) < 1 {
		return fmt.Sprintf("%+.0f ms", s*1000)
	}
	return fmt.Sprintf("%+.1f s", s)
}

// Keys.

type keyRow struct {
	cpapi.KeyInfo
	Connectors []cpapi.Connector
}

type keysData struct {
	Filter string
	Keys   []keyRow
	Total  int
}

func matches(k cpapi.KeyInfo, q string) bool {
	q = strings.ToLower(strings.TrimSpace(q))
	if q == "" {
		return true
	}
	for _, f := range []string{k.Name, k.Group, k.SigningCA, k.State} {
		if strings.Contains(strings.ToLower(f), q) {
			return true
		}
	}
	return false
}

func (c *Console) keysPage(w http.ResponseWriter, r *http.Request, s *session) {
	c.showKeys(w, r, s, http.StatusOK, "")
}

func (c *Console) showKeys(w http.ResponseWriter, r *http.Request, s *session, code int, msg string) {
	keys, err := c.svc.Keys(r.Context(), cpapi.KeyFilter{})
	if err != nil {
		c.fail(w, s, err)
		return
	}
	conns, err := c.svc.Connectors(r.Context(), "")
	if err != nil {
		c.fail(w, s, err)
		return
	}
	byKey := map[string][]cpapi.Connector{}
	for _, cn := range conns {
		byKey[cn.KeyID] = append(byKey[cn.KeyID], cn)
	}
	d := keysData{Filter: r.URL.Query().Get("q"), Total: len(keys)}
	for _, k := range keys {
		if matches(k, d.Filter) {
			d.Keys = append(d.Keys, keyRow{KeyInfo: k, Connectors: byKey[k.ID]})
		}
	}
	p := c.page(s, "Provisioning Keys", "keys", d)
	p.Error = msg
	c.render(w, code, "keys", p)
}

// keyCopy answers the full key text to the Copy button's script.
func (c *Console) keyCopy(w http.ResponseWriter, r *http.Request, s *session) {
	kt, err := c.svc.RevealKey(r.Context(), r.PathValue("name"))
	if err != nil {
		http.Error(w, message(err), status(err))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprint(w, kt.Text)
}

func (c *Console) keyDownload(w http.ResponseWriter, r *http.Request, s *session) {
	kt, err := c.svc.RevealKey(r.Context(), r.PathValue("name"))
	if err != nil {
		c.showKeys(w, r, s, status(err), message(err))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Disposition", `attachment; filename="`+kt.Name+`.key"`)
	fmt.Fprintln(w, kt.Text)
}

// staleKey refuses a change made from a page that showed an older
// generation of the key: the admin acted on a key that has changed since.
func (c *Console) staleKey(r *http.Request, name string) error {
	k, err := c.svc.Key(r.Context(), name)
	if err != nil {
		return err
	}
	if g := r.PostFormValue("generation"); g != strconv.FormatInt(k.Generation, 10) {
		return &cpapi.Error{Code: cpapi.CodeConflict, Message: fmt.Sprintf("Key %s was regenerated since this page was loaded, so nothing was changed. Check the key below and try again.", name)}
	}
	return nil
}

func (c *Console) keyChange(action string) func(w http.ResponseWriter, r *http.Request, s *session) {
	return func(w http.ResponseWriter, r *http.Request, s *session) {
		name := r.PathValue("name")
		if err := c.staleKey(r, name); err != nil {
			c.showKeys(w, r, s, status(err), message(err))
			return
		}
		var err error
		var flash string
		switch action {
		case "max":
			n, perr := strconv.ParseInt(strings.TrimSpace(r.PostFormValue("max_uses")), 10, 64)
			if perr != nil {
				c.showKeys(w, r, s, http.StatusBadRequest, fmt.Sprintf("Maximum connectors of %s: %q is not a whole number.", name, r.PostFormValue("max_uses")))
				return
			}
			_, err = c.svc.SetMaxUses(r.Context(), name, n)
			flash = fmt.Sprintf("%s may now enroll %d connectors.", name, n)
		case "regenerate":
			var kt cpapi.KeyText
			if kt, err = c.svc.RegenerateKey(r.Context(), name); err == nil {
				c.render(w, http.StatusOK, "regenerated", c.page(s, "Key regenerated", "keys", kt))
				return
			}
		case "revoke":
			_, err = c.svc.RevokeKey(r.Context(), name)
			flash = name + " is revoked: it enrolls nothing more. Connectors it enrolled keep working."
		case "delete":
			err = c.svc.DeleteKey(r.Context(), name, r.PostFormValue("force") == "on")
			flash = name + " is deleted."
		}
		if err != nil {
			c.showKeys(w, r, s, status(err), message(err))
			return
		}
		c.setFlash(s, flash)
		http.Redirect(w, r, "/keys", http.StatusSeeOther)
	}
}

func (c *Console) keyDeleteConfirm(w http.ResponseWriter, r *http.Request, s *session) {
	k, err := c.svc.Key(r.Context(), r.PathValue("name"))
	if err != nil {
		c.showKeys(w, r, s, status(err), message(err))
		return
	}
	c.render(w, http.StatusOK, "keydelete", c.page(s, "Delete "+k.Name, "keys", k))
}

// Groups.

type groupForm struct {
	Name, Location, Day string
	Hour                int
	Errors              map[string]string // by field
}

type groupsData struct {
	Groups []cpapi.Group
	Form   groupForm
}

func (c *Console) groupsPage(w http.ResponseWriter, r *http.Request, s *session) {
	c.showGroups(w, r, s, http.StatusOK, blankGroupForm, "")
}

// blankGroupForm is the new-group form as first shown: the service's
// default window, Sunday from 02:00.
var blankGroupForm = groupForm{Day: "sun", Hour: 2}

// groupsRefused shows the groups page with a refusal of the service.
func (c *Console) groupsRefused(w http.ResponseWriter, r *http.Request, s *session, err error) {
	c.showGroups(w, r, s, status(err), blankGroupForm, message(err))
}

func (c *Console) showGroups(w http.ResponseWriter, r *http.Request, s *session, code int, f groupForm, msg string) {
	gs, err := c.svc.Groups(r.Context())
	if err != nil {
		c.fail(w, s, err)
		return
	}
	// Each group with its rollout (the list has none).
	for i, g := range gs {
		if full, err := c.svc.Group(r.Context(), g.Name); err == nil {
			gs[i] = full
		}
	}
	p := c.page(s, "Connector Groups", "groups", groupsData{Groups: gs, Form: f})
	p.Error = msg
	c.render(w, code, "groups", p)
}

func readGroupForm(r *http.Request) (groupForm, cpapi.GroupSpec) {
	f := groupForm{Name: strings.TrimSpace(r.PostFormValue("name")), Location: strings.TrimSpace(r.PostFormValue("location")), Day: r.PostFormValue("day"), Errors: map[string]string{}}
	f.Hour, _ = strconv.Atoi(r.PostFormValue("hour"))
	day, hour, loc := f.Day, f.Hour, f.Location
	return f, cpapi.GroupSpec{Name: f.Name, Location: &loc, WindowDay: &day, WindowHour: &hour}
}

// groupError puts a refusal next to the field it is about.
func groupError(f *groupForm, err error) {
	switch {
	case cpapi.IsCode(err, cpapi.CodeExists):
		f.Errors["name"] = fmt.Sprintf("Name: a group named %q already exists; choose another name.", f.Name)
	case strings.Contains(message(err), "name"):
		f.Errors["name"] = "Name: " + message(err)
	case strings.Contains(message(err), "day"):
		f.Errors["day"] = message(err)
	case strings.Contains(message(err), "hour"):
		f.Errors["hour"] = message(err)
	}
}

func (c *Console) groupCreate(w http.ResponseWriter, r *http.Request, s *session) {
	f, sp := readGroupForm(r)
	if _, err := c.svc.CreateGroup(r.Context(), sp); err != nil {
		groupError(&f, err)
		c.showGroups(w, r, s, status(err), f, message(err))
		return
	}
	c.setFlash(s, "Group "+f.Name+" created.")
	http.Redirect(w, r, "/groups", http.StatusSeeOther)
}

func (c *Console) groupEditPage(w http.ResponseWriter, r *http.Request, s *session) {
	g, err := c.svc.Group(r.Context(), r.PathValue("name"))
	if err != nil {
		c.groupsRefused(w, r, s, err)
		return
	}
	f := groupForm{Name: g.Name, Location: g.Location, Day: cpapi.Days[g.WindowDay], Hour: g.WindowHour}
	c.render(w, http.StatusOK, "groupedit", c.page(s, "Edit group "+g.Name, "groups", f))
}

func (c *Console) groupEdit(w http.ResponseWriter, r *http.Request, s *session) {
	f, sp := readGroupForm(r)
	f.Name, sp.Name = r.PathValue("name"), r.PathValue("name")
	if _, err := c.svc.EditGroup(r.Context(), sp); err != nil {
		groupError(&f, err)
		p := c.page(s, "Edit group "+f.Name, "groups", f)
		p.Error = message(err)
		c.render(w, status(err), "groupedit", p)
		return
	}
	c.setFlash(s, "Group "+f.Name+" saved.")
	http.Redirect(w, r, "/groups", http.StatusSeeOther)
}

func (c *Console) groupDeleteConfirm(w http.ResponseWriter, r *http.Request, s *session) {
	g, err := c.svc.Group(r.Context(), r.PathValue("name"))
	if err != nil {
		c.groupsRefused(w, r, s, err)
		return
	}
	c.render(w, http.StatusOK, "groupdelete", c.page(s, "Delete group "+g.Name, "groups", g))
}

func (c *Console) groupDelete(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("name")
	if err := c.svc.DeleteGroup(r.Context(), name, r.PostFormValue("force") == "on"); err != nil {
		c.groupsRefused(w, r, s, err)
		return
	}
	c.setFlash(s, "Group "+name+" deleted.")
	http.Redirect(w, r, "/groups", http.StatusSeeOther)
}

// Connectors.

type connectorsData struct {
	Connectors []cpapi.Connector
	Poll       int // milliseconds
}

func (c *Console) connectorsData(r *http.Request) (connectorsData, error) {
	cs, err := c.svc.Connectors(r.Context(), r.URL.Query().Get("group"))
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].Name < cs[j].Name })
	return connectorsData{Connectors: cs, Poll: int(c.cfg.PollInterval / time.Millisecond)}, err
}

func (c *Console) connectorsPage(w http.ResponseWriter, r *http.Request, s *session) {
	d, err := c.connectorsData(r)
	if err != nil {
		c.fail(w, s, err)
		return
	}
	c.render(w, http.StatusOK, "connectors", c.page(s, "Connectors", "connectors", d))
}

// connectorRows is the table body alone, for the page's live refresh.
func (c *Console) connectorRows(w http.ResponseWriter, r *http.Request, s *session) {
	d, err := c.connectorsData(r)
	if err != nil {
		http.Error(w, message(err), status(err))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := c.pages["connectors"].ExecuteTemplate(w, "rows", c.page(s, "", "", d)); err != nil {
		c.log.Error("console: render rows", "err", err)
	}
}

func (c *Console) connectorRevokeConfirm(w http.ResponseWriter, r *http.Request, s *session) {
	cn, err := c.svc.Connector(r.Context(), r.PathValue("name"))
	if err != nil {
		c.fail(w, s, err)
		return
	}
	c.render(w, http.StatusOK, "connectorrevoke", c.page(s, "Revoke "+cn.Name, "connectors", cn))
}

func (c *Console) connectorRevoke(w http.ResponseWriter, r *http.Request, s *session) {
	res, err := c.svc.RevokeConnector(r.Context(), r.PathValue("name"))
	if err != nil {
		c.fail(w, s, err)
		return
	}
	msg := res.Connector.Name + " is revoked."
	if len(res.Regenerated) > 0 {
		msg += " The keys of its group were regenerated (copies made before stop working): " + strings.Join(res.Regenerated, ", ") + "."
	}
	c.setFlash(s, msg)
	http.Redirect(w, r, "/connectors", http.StatusSeeOther)
}

// keyFileName is the file the instructions tell the admin to save a key in.
func keyFileName(name string) string { return url.PathEscape(name) + ".key" }
