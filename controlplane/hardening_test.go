package controlplane_test

import (
	"strings"
	"testing"

	"github.com/outpost-appliance/outpost/provkey"
)

// TestWrongSecretIsGeneric: a wrong secret for a known key id gets the same
// answer as an unknown id, naming neither the key nor a regeneration that
// never happened; the detail is in the server log only.
func TestWrongSecretIsGeneric(t *testing.T) {
	e := newEnv(t, "")
	text := e.key("Melbourne", 5, "")
	pk, _ := provkey.Parse(text)
	wrong, _ := pk.WithSecret(nil)
	r := e.enroll(wrong.Reveal(), csrFor(t, newSigner(t)), fp(1), "n1")
	if r.Status != 401 || r.Error != "invalid_key" {
		t.Fatalf("wrong secret: %+v", r)
	}
	for _, leak := range []string{"Melbourne", pk.ID.String(), "has been regenerated"} {
		if strings.Contains(r.Message, leak) {
			t.Errorf("answer to an unauthenticated caller contains %q: %s", leak, r.Message)
		}
	}
	other, _ := provkey.Generate(pk.Host, pk.Pin, nil)
	u := e.enroll(other.Reveal(), csrFor(t, newSigner(t)), fp(2), "n2")
	if u.Status != r.Status || u.Error != r.Error || u.Message != r.Message {
		t.Errorf("unknown key id answered %+v, wrong secret %+v: they must be the same", u, r)
	}
	log := e.logBuf.String()
	if !strings.Contains(log, "wrong secret for key Melbourne") || !strings.Contains(log, "unknown key id") {
		t.Errorf("the server log lacks the refusal details:\n%.2000s", log)
	}
}
