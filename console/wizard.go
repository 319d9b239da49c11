package console

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/cpapi"
)

// The Add Connector wizard keeps its answers in hidden fields, so it works
// without JavaScript and without server state; nothing is created before
// the review step is confirmed.

// wizard is the wizard's state: every answer so far.
type wizard struct {
	Step        int
	KeyMode     string // "new" or "existing"
	Existing    string // the existing key's name
	SigningCA   string
	GroupMode   string // "new" or "existing"
	Group       string
	Location    string
	Day         string
	Hour        int
	KeyName     string
	MaxUses     string
	ExpiresIn   string
	Errors      map[string]string
	Keys        []cpapi.KeyInfo // step 1's choices
	Groups      []cpapi.Group   // step 3's choices
	SigningCAs  []string
	ExistingKey cpapi.KeyInfo // review of an existing key
}

var wizardSteps = []string{"Provisioning key", "Signing certificate", "Connector group", "Key details", "Review", "Deploy"}

func (w wizard) StepNames() []string { return wizardSteps }

func readWizard(r *http.Request) wizard {
	v := func(k string) string { return strings.TrimSpace(r.PostFormValue(k)) }
	wz := wizard{KeyMode: v("key_mode"), Existing: v("existing"), SigningCA: v("signing_ca"), GroupMode: v("group_mode"), Group: v("group"),
		Location: v("location"), Day: v("day"), KeyName: v("key_name"), MaxUses: v("max_uses"), ExpiresIn: v("expires_in"), Errors: map[string]string{}}
	wz.Step, _ = strconv.Atoi(v("step"))
	wz.Hour, _ = strconv.Atoi(v("hour"))
	if wz.GroupMode == "existing" {
		wz.Group = v("existing_group")
	}
	return wz
}

func (c *Console) wizardStart(w http.ResponseWriter, r *http.Request, s *session) {
	c.showWizard(w, r, s, http.StatusOK, wizard{Step: 1, KeyMode: "new", GroupMode: "new", SigningCA: "Connector", Day: "sun", Hour: 2, MaxUses: "2", ExpiresIn: "14d", Errors: map[string]string{}}, "")
}

func (c *Console) showWizard(w http.ResponseWriter, r *http.Request, s *session, code int, wz wizard, msg string) {
	var err error
	if wz.Keys, err = c.svc.Keys(r.Context(), cpapi.KeyFilter{State: cpapi.KeyActive}); err == nil {
		wz.Groups, err = c.svc.Groups(r.Context())
	}
	if err != nil {
		c.fail(w, s, err)
		return
	}
	for n := range c.svc.Authority.Signing {
		wz.SigningCAs = append(wz.SigningCAs, n)
	}
	sort.Strings(wz.SigningCAs)
	if wz.KeyMode == "existing" && wz.Existing != "" {
		wz.ExistingKey, _ = c.svc.Key(r.Context(), wz.Existing)
	}
	p := c.page(s, "Add Connector", "add", wz)
	p.Error = msg
	c.render(w, code, "wizard", p)
}

// wizardStep checks the answers of the step posted and shows the next
// one, or the same one with its problems; "back" goes back unchecked.
func (c *Console) wizardStep(w http.ResponseWriter, r *http.Request, s *session) {
	wz := readWizard(r)
	ctx := r.Context()
	if r.PostFormValue("back") != "" {
		wz.Step--
		if wz.KeyMode == "existing" && wz.Step > 1 && wz.Step < 5 {
			wz.Step = 1
		}
		c.showWizard(w, r, s, http.StatusOK, wz, "")
		return
	}
	bad := func(field, msg string) {
		wz.Errors[field] = msg
	}
	switch wz.Step {
	case 1:
		switch wz.KeyMode {
		case "existing":
			k, err := c.svc.Key(ctx, wz.Existing)
			switch {
			case wz.Existing == "":
				bad("existing", "Existing key: choose one, or create a new key.")
			case err != nil:
				bad("existing", "Existing key: "+message(err))
			case k.UseCount >= k.MaxUses:
				bad("existing", fmt.Sprintf("Existing key: %s is used up (%d of %d); raise its maximum on the Provisioning Keys page, or create a new key.", k.Name, k.UseCount, k.MaxUses))
			case k.State != cpapi.KeyActive || k.Expired:
				bad("existing", fmt.Sprintf("Existing key: %s is %s; create a new key.", k.Name, map[bool]string{true: "expired", false: k.State}[k.Expired]))
			}
			if len(wz.Errors) == 0 {
				wz.Step = 5
			}
		case "new":
			wz.Step = 2
		default:
			bad("key_mode", "Provisioning key: choose a new or an existing key.")
		}
	case 2:
		if c.svc.Authority.Signing[wz.SigningCA] == nil {
			bad("signing_ca", fmt.Sprintf("Signing certificate: there is no signing CA named %q.", wz.SigningCA))
		} else {
			wz.Step = 3
		}
	case 3:
		switch wz.GroupMode {
		case "existing":
			if _, err := c.svc.Group(ctx, wz.Group); err != nil {
				bad("existing_group", "Existing group: choose one of the list.")
			}
		case "new":
			if _, err := c.svc.Group(ctx, wz.Group); err == nil {
				bad("group", groupTaken(wz.Group))
			} else if e := checkName(wz.Group); e != "" {
				bad("group", "Group name: "+e)
			}
			if _, ok := dayName(wz.Day); !ok {
				bad("day", "Upgrade window day: choose a day of the week.")
			}
			if wz.Hour < 0 || wz.Hour > 23 {
				bad("hour", "Upgrade window start: choose an hour from 00 to 23.")
			}
		default:
			bad("group_mode", "Connector group: choose a new or an existing group.")
		}
		if len(wz.Errors) == 0 {
			wz.Step = 4
			if wz.KeyName == "" {
				wz.KeyName = wz.Group
			}
		}
	case 4:
		if _, err := c.svc.Key(ctx, wz.KeyName); err == nil {
			bad("key_name", keyTaken(wz.KeyName))
		} else if e := checkName(wz.KeyName); e != "" {
			bad("key_name", "Key name: "+e)
		}
		if n, err := strconv.ParseInt(wz.MaxUses, 10, 64); err != nil || n < 1 {
			bad("max_uses", "Maximum connectors: a whole number of at least 1 (2 for a pair).")
		}
		if _, _, err := cpapi.ParseExpiresIn(wz.ExpiresIn); err != nil {
			bad("expires_in", "Expires in: "+err.Error())
		}
		if len(wz.Errors) == 0 {
			wz.Step = 5
		}
	case 5:
		c.wizardCreate(w, r, s, wz)
		return
	default:
		wz.Step = 1
	}
	code := http.StatusOK
	if len(wz.Errors) > 0 {
		code = http.StatusBadRequest
	}
	c.showWizard(w, r, s, code, wz, "")
}

// groupTaken and keyTaken refuse a name in use, whether a step's check
// finds it or the service does when the wizard creates.
func groupTaken(name string) string {
	return fmt.Sprintf("Group name: a group named %q already exists; choose another name or pick it as an existing group.", name)
}

func keyTaken(name string) string {
	return fmt.Sprintf("Key name: a key named %q already exists; choose another name.", name)
}

func checkName(n string) string {
	if n == "" || len(n) > 64 {
		return "1 to 64 characters."
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Sprintf("%q is not allowed; use letters, digits, '-', '_' and '.'.", c)
		}
	}
	return ""
}

// wizardCreate makes what the review lists: the group (if new), then the
// key. Should the key fail after the group was made, the group stays and
// the wizard goes back to the key's details with it chosen.
func (c *Console) wizardCreate(w http.ResponseWriter, r *http.Request, s *session, wz wizard) {
	ctx := r.Context()
	if wz.KeyMode == "existing" {
		http.Redirect(w, r, "/add/done?key="+url.QueryEscape(wz.Existing), http.StatusSeeOther)
		return
	}
	if wz.GroupMode == "new" {
		loc, day, hour := wz.Location, wz.Day, wz.Hour
		if _, err := c.svc.CreateGroup(ctx, cpapi.GroupSpec{Name: wz.Group, Location: &loc, WindowDay: &day, WindowHour: &hour}); err != nil {
			wz.Step = 3
			if cpapi.IsCode(err, cpapi.CodeExists) {
				wz.Errors["group"] = groupTaken(wz.Group)
			}
			c.showWizard(w, r, s, status(err), wz, message(err))
			return
		}
		wz.GroupMode = "existing"
	}
	n, _ := strconv.ParseInt(wz.MaxUses, 10, 64)
	if _, err := c.svc.CreateKey(ctx, cpapi.KeySpec{Name: wz.KeyName, Group: wz.Group, MaxUses: n, ExpiresIn: wz.ExpiresIn, SigningCA: wz.SigningCA}); err != nil {
		wz.Step = 4
		if cpapi.IsCode(err, cpapi.CodeExists) {
			wz.Errors["key_name"] = keyTaken(wz.KeyName)
		}
		c.showWizard(w, r, s, status(err), wz, message(err))
		return
	}
	http.Redirect(w, r, "/add/done?key="+url.QueryEscape(wz.KeyName), http.StatusSeeOther)
}

type doneData struct {
	Key       cpapi.KeyText
	File      string
	Property  string
	PropLabel string
	Server    string
}

func (c *Console) wizardDone(w http.ResponseWriter, r *http.Request, s *session) {
	kt, err := c.svc.RevealKey(r.Context(), r.URL.Query().Get("key"))
	if err != nil {
		c.render(w, status(err), "error", page{Title: "Add Connector", Signed: true, CSRF: s.csrf, Error: message(err)})
		return
	}
	label := appliance.PropProvisionKey
	if p, ok := appliance.LookupProperty(appliance.PropProvisionKey); ok {
		label = p.Label
	}
	d := doneData{Key: kt, File: keyFileName(kt.Name), Property: appliance.PropProvisionKey, PropLabel: label, Server: c.cfg.ServerURL}
	c.render(w, http.StatusOK, "done", c.page(s, "Add Connector: deploy", "add", d))
}
