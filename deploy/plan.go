package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/outpost-appliance/outpost/appliance"
)

// VMPlan is what one VM will be.
type VMPlan struct {
	Name       string            `json:"name"`
	MAC        string            `json:"mac"`
	Host       string            `json:"host,omitempty"` // empty: DRS or the only host decides
	Datastore  string            `json:"datastore"`
	Properties map[string]string `json:"properties"` // the key redacted
	Exists     bool              `json:"exists"`
	PowerState string            `json:"power_state,omitempty"`

	props map[string]string // with the key in clear
}

// Plan is what Apply will do; it holds no secret in its exported fields.
type Plan struct {
	API            string   `json:"api"` // APIvCenter or APIESXi
	Datacenter     string   `json:"datacenter"`
	Cluster        string   `json:"cluster,omitempty"`
	Network        string   `json:"network"`
	Template       string   `json:"template"` // a template VM, or the item in Library
	Library        string   `json:"library,omitempty"`
	TemplateExists bool     `json:"template_exists"`
	Rule           string   `json:"rule,omitempty"` // DRS anti-affinity rule, on a cluster
	VMs            []VMPlan `json:"vms"`
	Warnings       []string `json:"warnings,omitempty"`
}

// Plan reads the OVA and the inventory and says what Apply would do.
// It changes nothing. MAC collisions and a non-appliance OVA are errors.
func (s *Session) Plan(ctx context.Context) (*Plan, error) {
	env, err := s.descriptor()
	if err != nil {
		return nil, err
	}
	if err := checkAppliance(s.cfg.OVA, env); err != nil {
		return nil, err
	}
	inv, err := s.inventory(ctx)
	if err != nil {
		return nil, err
	}
	p := &Plan{API: s.api, Datacenter: s.dc.Name(), Network: pathBase(s.network.GetInventoryPath()), Template: TemplateName(s.cfg.Name)}
	if s.cluster != nil {
		p.Cluster = s.cluster.Name()
		if s.cfg.Count > 1 {
			p.Rule = RuleName(s.cfg.Name)
		}
	}
	byName := map[string]inventoryVM{}
	for _, v := range inv {
		byName[v.name] = v
	}
	if s.cfg.Library != "" {
		if err := s.planLibrary(ctx, p); err != nil {
			return nil, err
		}
	} else if t, ok := byName[p.Template]; ok {
		if t.extra[TagName] != s.cfg.Name || t.extra[TagRole] != RoleTemplate {
			return nil, fmt.Errorf("a VM named %s exists and was not made by outpost deploy for %s; remove or rename it", p.Template, s.cfg.Name)
		}
		p.TemplateExists = true
	}
	var probs []error
	for i := 1; i <= s.cfg.Count; i++ {
		name := VMName(s.cfg.Name, i)
		mac := appliance.DeriveMAC(name).String()
		vp := VMPlan{Name: name, MAC: mac, Datastore: s.datastores[(i-1)%len(s.datastores)].Name()}
		if len(s.hosts) > 0 {
			vp.Host = s.hosts[(i-1)%len(s.hosts)].Name()
		}
		if v, ok := byName[name]; ok {
			if v.extra[TagName] != s.cfg.Name || v.extra[TagRole] != RoleConnector {
				probs = append(probs, fmt.Errorf("a VM named %s exists and was not made by outpost deploy for %s; remove or rename it", name, s.cfg.Name))
			}
			vp.Exists, vp.PowerState = true, string(v.power)
			vp.Host, vp.Datastore = v.host, v.ds
		}
		for _, v := range inv {
			if v.name == name {
				continue
			}
			for _, m := range v.macs {
				if m == mac {
					probs = append(probs, fmt.Errorf("%s: %w: %s has VM %s; VM names derive their MAC, so rename one (--name)", name, ErrMACCollision, mac, v.name))
				}
			}
		}
		vp.props = s.properties(i, name)
		vp.Properties = map[string]string{}
		for k, v := range vp.props {
			vp.Properties[k] = v
		}
		vp.Properties[appliance.PropProvisionKey] = s.cfg.Key.Redacted()
		p.VMs = append(p.VMs, vp)
	}
	if len(probs) > 0 {
		return nil, errors.Join(probs...)
	}
	if s.cfg.Count > 1 {
		switch {
		case len(s.hosts) == 1:
			p.Warnings = append(p.Warnings, fmt.Sprintf("all %d VMs run on the single host %s: a host failure takes them all down", s.cfg.Count, s.hosts[0].Name()))
		case s.cluster == nil && len(s.datastores) == 1:
			p.Warnings = append(p.Warnings, "no cluster given: nothing keeps the VMs on different hosts")
		}
	}
	return p, nil
}

// properties are the OVF properties of the i-th VM.
func (s *Session) properties(i int, name string) map[string]string {
	n := s.cfg.Net
	p := map[string]string{
		appliance.PropProvisionKey: s.cfg.Key.Reveal(),
		appliance.PropHostname:     strings.ToLower(name),
		appliance.PropIPv4Mode:     appliance.IPv4ModeDHCP,
	}
	if len(n.IPs) > 0 {
		p[appliance.PropIPv4Mode] = appliance.IPv4ModeStatic
		p[appliance.PropIPv4Address] = n.IPs[i-1]
		p[appliance.PropIPv4Gateway] = n.Gateway
	}
	set := func(k string, v string) {
		if v != "" {
			p[k] = v
		}
	}
	set(appliance.PropDNSServers, strings.Join(n.DNS, ","))
	set(appliance.PropDNSSearch, strings.Join(n.Search, ","))
	set(appliance.PropNTPServers, strings.Join(n.NTP, ","))
	set(appliance.PropProxy, n.Proxy)
	return p
}
