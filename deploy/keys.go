package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/provkey"
)

// ErrKeyExhausted is returned for a key with fewer uses left than the VMs
// still to deploy, or one that cannot enroll at all.
var ErrKeyExhausted = errors.New("provisioning key cannot enroll the VMs")

// ControlPlane is what deploy needs of the admin client (cpclient.Client).
type ControlPlane interface {
	Keys(ctx context.Context, f cpapi.KeyFilter) ([]cpapi.KeyInfo, error)
	CreateKey(ctx context.Context, sp cpapi.KeySpec) (cpapi.KeyText, error)
	RevealKey(ctx context.Context, name string) (cpapi.KeyText, error)
	Connectors(ctx context.Context, group string) ([]cpapi.Connector, error)
}

// GroupKey returns the key named name in group, creating it with exactly
// count uses when it does not exist (a rerun finds the one it made).
func GroupKey(ctx context.Context, cp ControlPlane, group, name string, count int) (provkey.Key, cpapi.KeyInfo, error) {
	ks, err := cp.Keys(ctx, cpapi.KeyFilter{Group: group, Name: name})
	if err != nil {
		return provkey.Key{}, cpapi.KeyInfo{}, err
	}
	var kt cpapi.KeyText
	if len(ks) > 0 {
		kt, err = cp.RevealKey(ctx, name)
	} else {
		kt, err = cp.CreateKey(ctx, cpapi.KeySpec{Name: name, Group: group, MaxUses: int64(count)})
	}
	if err != nil {
		return provkey.Key{}, cpapi.KeyInfo{}, fmt.Errorf("key %s in group %s: %w", name, group, err)
	}
	k, err := provkey.Parse(kt.Text)
	if err != nil {
		return provkey.Key{}, cpapi.KeyInfo{}, fmt.Errorf("the control plane returned a key that does not parse: %w", err)
	}
	return k, kt.KeyInfo, nil
}

// LookupKey finds a key on the control plane by its id.
func LookupKey(ctx context.Context, cp ControlPlane, k provkey.Key) (cpapi.KeyInfo, error) {
	ks, err := cp.Keys(ctx, cpapi.KeyFilter{})
	if err != nil {
		return cpapi.KeyInfo{}, err
	}
	for _, ki := range ks {
		if ki.ID == k.ID.String() {
			return ki, nil
		}
	}
	return cpapi.KeyInfo{}, fmt.Errorf("%w: the control plane does not know key %s (deleted, or another control plane's)", ErrKeyExhausted, k.Redacted())
}

// CheckUses refuses a key that cannot enroll need more connectors.
func CheckUses(ki cpapi.KeyInfo, need int, now time.Time) error {
	switch {
	case need <= 0:
		return nil
	case ki.State == cpapi.KeyRevoked:
		return fmt.Errorf("%w: key %s is revoked; create another", ErrKeyExhausted, ki.Name)
	case ki.Expired || (!ki.ExpiresAt.IsZero() && now.After(ki.ExpiresAt)):
		return fmt.Errorf("%w: key %s expired; create another", ErrKeyExhausted, ki.Name)
	case ki.MaxUses-ki.UseCount < int64(need):
		return fmt.Errorf("%w: key %s has %d of %d uses left and %d VMs are to enroll; raise it with 'outpost keys edit %s --max-uses %d'",
			ErrKeyExhausted, ki.Name, max(ki.MaxUses-ki.UseCount, 0), ki.MaxUses, need, ki.Name, ki.UseCount+int64(need))
	}
	return nil
}

// Missing is how many of the plan's VMs do not exist yet.
func (p *Plan) Missing() int {
	n := 0
	for _, v := range p.VMs {
		if !v.Exists {
			n++
		}
	}
	return n
}

// Progress is one VM's state while waiting.
type Progress struct {
	VM     string
	Status string // guestinfo.outpost.status, as first boot published it
	Health string // the control plane's health of the connector of that name
	Done   bool
	Failed bool
}

// Wait polls each VM's guestinfo.outpost.status and, with cp, the control
// plane's connectors, until every VM is enrolled (healthy on the control
// plane, or "enrolled" in guestinfo without cp), one fails, or ctx ends.
// report is called when a VM's progress changes.
func (s *Session) Wait(ctx context.Context, p *Plan, cp ControlPlane, group string, every time.Duration, report func(Progress)) error {
	last := map[string]Progress{}
	timedOut := func() error {
		var open []string
		for _, v := range p.VMs {
			if !last[v.Name].Done {
				open = append(open, fmt.Sprintf("%s (status %q)", v.Name, last[v.Name].Status))
			}
		}
		return fmt.Errorf("timed out waiting for %s: check each VM's console (it shows first boot's status), that it reaches the control plane on 443, and 'outpost connectors list'", strings.Join(open, ", "))
	}
	for {
		inv, err := s.inventory(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return timedOut()
			}
			return err
		}
		status := map[string]string{}
		for _, v := range inv {
			status[v.name] = v.extra[StatusVar]
		}
		health := map[string]string{}
		if cp != nil {
			cs, err := cp.Connectors(ctx, group)
			if err != nil && ctx.Err() != nil {
				// Cut off by the deadline: report what was last seen.
				return timedOut()
			}
			for _, c := range cs {
				health[c.Name] = c.Health
			}
		}
		done := 0
		var failed []string
		for _, v := range p.VMs {
			pr := Progress{VM: v.Name, Status: status[v.Name], Health: health[v.Name]}
			state, reason := appliance.ParseGuestStatus(pr.Status)
			switch {
			case pr.Health == cpapi.HealthHealthy:
				pr.Done = true
			case cp == nil && state == appliance.GuestEnrolled:
				pr.Done = true
			case state == appliance.GuestFailed:
				pr.Failed = true
				failed = append(failed, v.Name+": "+reason)
			}
			if pr != last[v.Name] && report != nil {
				report(pr)
			}
			last[v.Name] = pr
			if pr.Done {
				done++
			}
		}
		if len(failed) > 0 {
			return fmt.Errorf("first boot failed on %s", strings.Join(failed, "; "))
		}
		if done == len(p.VMs) {
			return nil
		}
		select {
		case <-ctx.Done():
			return timedOut()
		case <-time.After(every):
		}
	}
}
