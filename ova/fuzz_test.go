package ova

import (
	"bytes"
	"testing"

	"github.com/vmware/govmomi/ovf"
)

// FuzzDescriptorText checks that any text the validation lets through comes
// back unchanged from govmomi's parser: the escaping loses nothing.
func FuzzDescriptorText(f *testing.F) {
	f.Add("Outpost & <co>", "Label \"q\"", "line1\nline2\r\n\ttab", "3|h|b==")
	f.Add("", "", "", "")
	f.Add("é ü 日本", "'", "]]>", "&amp;")
	disk := fixedDisk(f)
	f.Fuzz(func(t *testing.T, desc, label, pdesc, def string) {
		a := testAppliance()
		a.Description = desc
		a.Properties = []Property{{Key: "outpost.x", Category: "C", Label: label, Description: pdesc, Default: def}}
		b, err := Descriptor(a, []Disk{disk})
		if err != nil {
			return // refused input is fine; only accepted input must round-trip
		}
		env, err := ovf.Unmarshal(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("govmomi cannot parse the descriptor: %v\n%s", err, b)
		}
		vs := env.VirtualSystem
		if desc != "" && (vs.Annotation == nil || vs.Annotation.Annotation != desc) {
			t.Errorf("annotation %q came back as %+v", desc, vs.Annotation)
		}
		p := vs.Product[0].Property[0]
		if deref(p.Label) != label || deref(p.Description) != pdesc || deref(p.Default) != def {
			t.Errorf("property came back as label %q description %q default %q", deref(p.Label), deref(p.Description), deref(p.Default))
		}
	})
}
