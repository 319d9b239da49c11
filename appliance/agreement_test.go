package appliance_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/ovf"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/artifact"
	"github.com/outpost-appliance/outpost/builder"
	"github.com/outpost-appliance/outpost/firstboot/config"
	"github.com/outpost-appliance/outpost/images"
	"github.com/outpost-appliance/outpost/ova"
)

// TestImageOVFAndFirstBootAgree holds the three places that name the
// appliance's properties to the contract, so that renaming a property in any
// one of them fails here: the shipped image spec (images/connector/image.yaml),
// the OVF descriptor that `outpost image build` writes from it (read back with
// govmomi's parser, as vSphere tools do), and first boot's configuration
// reader. It also checks the image's hardware and the written descriptor
// against the contract's defaults.
func TestImageOVFAndFirstBootAgree(t *testing.T) {
	spec, _, err := builder.ParseSpec(images.ConnectorPath, images.Connector)
	if err != nil {
		t.Fatalf("%v", err)
	}
	env := writeOVF(t, spec)
	ovfProps := appliance.OVFProperties()

	t.Run("image spec properties", func(t *testing.T) {
		var got []string
		for _, p := range spec.Properties {
			got = append(got, p.Key)
			c, ok := appliance.LookupProperty(p.Key)
			switch {
			case !ok:
				t.Errorf("%s declares property %s, which the contract (package appliance) does not know", images.ConnectorPath, p.Key)
				continue
			case !c.InOVF:
				t.Errorf("%s declares property %s, which the contract says the OVF does not declare", images.ConnectorPath, p.Key)
			}
			if appliance.PropertyType(p.Type) != c.Type {
				t.Errorf("%s: property %s has type %s, the contract says %s", images.ConnectorPath, p.Key, p.Type, c.Type)
			}
			if p.Password != c.Password {
				t.Errorf("%s: property %s password = %v, the contract says %v", images.ConnectorPath, p.Key, p.Password, c.Password)
			}
			if p.Default != c.Default {
				t.Errorf("%s: property %s default = %q, the contract says %q", images.ConnectorPath, p.Key, p.Default, c.Default)
			}
		}
		if want := keys(ovfProps); !slices.Equal(got, want) {
			t.Errorf("%s declares properties\n  %q\nthe contract's OVF properties, in order, are\n  %q", images.ConnectorPath, got, want)
		}
	})

	t.Run("written OVF descriptor properties", func(t *testing.T) {
		if env.VirtualSystem == nil || len(env.VirtualSystem.Product) != 1 {
			t.Fatalf("descriptor has no single ProductSection: %+v", env.VirtualSystem)
		}
		var got []string
		for _, p := range env.VirtualSystem.Product[0].Property {
			got = append(got, p.Key)
			c, ok := appliance.LookupProperty(p.Key)
			if !ok {
				t.Errorf("the OVF declares property %s, which the contract does not know", p.Key)
				continue
			}
			if p.Type != string(c.Type) {
				t.Errorf("the OVF declares %s with type %q, the contract says %s", p.Key, p.Type, c.Type)
			}
			if deref(p.Password) != c.Password {
				t.Errorf("the OVF declares %s with password %v, the contract says %v", p.Key, deref(p.Password), c.Password)
			}
			if deref(p.Default) != c.Default {
				t.Errorf("the OVF declares %s with default %q, the contract says %q", p.Key, deref(p.Default), c.Default)
			}
			var want string
			if len(c.Choices) > 0 {
				want = `ValueMap{"` + strings.Join(c.Choices, `","`) + `"}`
			}
			if q := deref(p.Qualifiers); q != want {
				t.Errorf("the OVF declares %s with qualifiers %q, want %q from the contract's choices", p.Key, q, want)
			}
		}
		if want := keys(ovfProps); !slices.Equal(got, want) {
			t.Errorf("the OVF declares properties\n  %q\nthe contract's OVF properties, in order, are\n  %q", got, want)
		}
	})

	t.Run("first boot reads every contract property and no other", func(t *testing.T) {
		for _, p := range appliance.Properties() {
			for _, prob := range problems(map[string]string{p.Key: "1500"}) {
				if prob.Property == p.Key && strings.HasPrefix(prob.Message, "unknown property") {
					t.Errorf("first boot refuses contract property %s: %s", p.Key, prob)
				}
			}
			if p.Type == appliance.TypeInt && !hasProblem(problems(map[string]string{p.Key: "not-a-number"}), p.Key) {
				t.Errorf("first boot accepts %q for %s, which the contract says is an %s", "not-a-number", p.Key, p.Type)
			}
		}
		for _, k := range []string{"outpost.bogus", "outpost.ipv4.addr", "outpost.provisioning_key"} {
			probs := problems(map[string]string{k: "x"})
			if !hasProblem(probs, k) {
				t.Errorf("first boot accepts %s, which the contract does not declare", k)
			}
		}
		// The OVF environment carries every declared key through to
		// validation.
		var b strings.Builder
		b.WriteString(`<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1"><PropertySection>`)
		for _, p := range ovfProps {
			b.WriteString(`<Property key="` + p.Key + `" value="v"/>`)
		}
		b.WriteString(`</PropertySection></Environment>`)
		set, err := config.ParseOVFEnv("ovf-env.xml", []byte(b.String()))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for k := range set.Props {
			got = append(got, k)
		}
		slices.Sort(got)
		want := keys(ovfProps)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("first boot read %q from the OVF environment, want %q", got, want)
		}
	})

	t.Run("hardware", func(t *testing.T) {
		h := spec.Hardware
		if h.CPUs != appliance.DefaultCPUs || h.MemoryMiB != appliance.DefaultMemoryMiB ||
			int64(h.Disk.Size) != appliance.DefaultDiskBytes || h.Disk.Provisioning != appliance.DefaultProvisioning ||
			h.NICs != appliance.NICs || h.Firmware != appliance.DefaultFirmware || h.VirtualHardware != appliance.DefaultVirtualHardware {
			t.Errorf("%s hardware %+v differs from the contract's defaults", images.ConnectorPath, h)
		}
		cs, err := env.ToConfigSpec()
		if err != nil {
			t.Fatal(err)
		}
		if cs.NumCPUs != appliance.DefaultCPUs || cs.MemoryMB != appliance.DefaultMemoryMiB ||
			cs.Firmware != appliance.DefaultFirmware.OVF() || cs.Version != appliance.DefaultVirtualHardware {
			t.Errorf("the OVF's config spec: cpus %d, memory %d MiB, firmware %q, version %q; the contract says %d, %d, %q, %q",
				cs.NumCPUs, cs.MemoryMB, cs.Firmware, cs.Version, appliance.DefaultCPUs, appliance.DefaultMemoryMiB,
				appliance.DefaultFirmware.OVF(), appliance.DefaultVirtualHardware)
		}
		var nics []string
		for _, it := range env.VirtualSystem.VirtualHardware[0].Item {
			if it.ResourceType != nil && *it.ResourceType == ovf.EthernetAdapter {
				nics = append(nics, deref(it.Address))
			}
		}
		if want := appliance.DeriveMAC(spec.Name).String(); len(nics) != appliance.NICs || nics[0] != want {
			t.Errorf("the OVF's NICs have MACs %q, want one NIC with %s derived from %s", nics, want, spec.Name)
		}
	})
}

// writeOVF writes the spec's OVA the way `outpost image build` does (package
// dist, from a small blank raw disk) and parses its descriptor.
func writeOVF(t *testing.T, spec *builder.Spec) *ovf.Envelope {
	t.Helper()
	dir := t.TempDir()
	rawPath := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(rawPath, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(rawPath, 4<<20); err != nil {
		t.Fatal(err)
	}
	m, err := spec.MAC()
	if err != nil {
		t.Fatal(err)
	}
	job := &artifact.Job{Spec: spec, MAC: m, RawPath: rawPath, Epoch: time.Unix(0, 0)}
	defer job.Close()
	ovaFormat, ok := artifact.Lookup("ova")
	if !ok {
		t.Fatal("artifact has no ova format")
	}
	dst := filepath.Join(dir, spec.Name+".ova")
	if err := ovaFormat.Write(context.Background(), job, dst); err != nil {
		t.Fatalf("writing the OVA: %v", err)
	}
	f, err := os.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env, _, err := ova.ReadDescriptor(f)
	if err != nil {
		t.Fatalf("govmomi cannot read the descriptor of %s: %v", dst, err)
	}
	return env
}

// problems validates props as first boot does and returns what it reports.
func problems(props map[string]string) []config.Problem {
	vals := map[string]config.Value{}
	for k, v := range props {
		vals[k] = config.Value{Text: v, Source: "test"}
	}
	_, err := config.Validate(vals)
	if err == nil {
		return nil
	}
	ve, ok := err.(*config.ValidationError)
	if !ok {
		return []config.Problem{{Message: err.Error()}}
	}
	return ve.Problems
}

func hasProblem(probs []config.Problem, key string) bool {
	for _, p := range probs {
		if p.Property == key {
			return true
		}
	}
	return false
}

func keys(props []appliance.Property) []string {
	var out []string
	for _, p := range props {
		out = append(out, p.Key)
	}
	return out
}

func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
