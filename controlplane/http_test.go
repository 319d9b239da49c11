package controlplane

import (
	"testing"

	"github.com/outpost-appliance/outpost/controlplane/store"
	"github.com/outpost-appliance/outpost/cpapi"
)

// TestStatuses keeps the code → status table complete: a code without a
// status would answer 500.
func TestStatuses(t *testing.T) {
	for _, code := range []string{cpapi.CodeBadRequest, cpapi.CodeTooLarge, cpapi.CodeInvalidKey, cpapi.CodeWrongHost,
		cpapi.CodeKeyExhausted, cpapi.CodeKeyRevoked, cpapi.CodeKeyExpired, cpapi.CodeBadCSR, cpapi.CodeRateLimited,
		cpapi.CodeBlocked, cpapi.CodeRevoked, cpapi.CodeUnauthorized, cpapi.CodeNotFound, cpapi.CodeExists,
		cpapi.CodeConflict, cpapi.CodeInternal, cpapi.CodeUnhealthy, cpapi.CodeMethodNotAllowed} {
		if statuses[code] == 0 {
			t.Errorf("code %s has no HTTP status", code)
		}
	}
	if statuses[cpapi.CodeKeyExhausted] != 403 || adminStatuses[cpapi.CodeKeyExhausted] != 409 {
		t.Error("key_exhausted answers 403 to an appliance and 409 to an admin")
	}
}

// TestStoredStatesAreTheAPIs: the service copies states from rows to the
// wire unchanged.
func TestStoredStatesAreTheAPIs(t *testing.T) {
	for _, p := range [][2]string{{store.KeyActive, cpapi.KeyActive}, {store.KeyRevoked, cpapi.KeyRevoked},
		{store.ConnectorActive, cpapi.ConnectorActive}, {store.ConnectorBlocked, cpapi.ConnectorBlocked}, {store.ConnectorRevoked, cpapi.ConnectorRevoked}} {
		if p[0] != p[1] {
			t.Errorf("stored state %q is %q in the API", p[0], p[1])
		}
	}
}
