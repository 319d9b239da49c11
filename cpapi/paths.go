package cpapi

import (
	"net/url"
	"strings"
)

// Routes. A {name} segment is filled with Path; the server registers the
// patterns as they are ("GET " + PathKey).
const (
	PathHealthz   = "/healthz"
	PathEnroll    = "/api/v1/enroll"    // POST EnrollRequest → EnrollResponse; no admin token
	PathHeartbeat = "/api/v1/heartbeat" // POST HeartbeatRequest → HeartbeatResponse; mutual TLS
	PathRenew     = "/api/v1/renew"     // POST RenewRequest → RenewResponse; mutual TLS

	// Admin routes (Authorization: Bearer TOKEN).
	PathGroups          = "/api/v1/groups"                   // GET → []Group; POST GroupSpec → Group
	PathGroup           = "/api/v1/groups/{name}"            // GET → Group; PATCH GroupSpec → Group; DELETE[?force=true] → Deleted
	PathKeys            = "/api/v1/keys"                     // GET[?KeyFilter] → []KeyInfo; POST KeySpec → KeyText
	PathKey             = "/api/v1/keys/{name}"              // GET → KeyInfo; PATCH KeyEdit → KeyInfo; DELETE[?force=true] → Deleted
	PathKeyReveal       = "/api/v1/keys/{name}/reveal"       // POST → KeyText
	PathKeyRegenerate   = "/api/v1/keys/{name}/regenerate"   // POST → KeyText
	PathKeyRevoke       = "/api/v1/keys/{name}/revoke"       // POST → KeyInfo
	PathConnectors      = "/api/v1/connectors"               // GET[?group=] → []Connector
	PathConnector       = "/api/v1/connectors/{name}"        // GET → Connector
	PathConnectorRevoke = "/api/v1/connectors/{name}/revoke" // POST → RevokeResult
	PathGroupUpgrade    = "/api/v1/groups/{name}/upgrade"    // POST UpgradeNow → Group: start the rollout now, outside the window
	PathReleases        = "/api/v1/releases"                 // GET → []Release; POST the bundle (application/octet-stream) → Release
	PathRelease         = "/api/v1/releases/{name}"          // GET → Release ({name} is the version)
	PathReleaseBundle   = "/api/v1/releases/{name}/bundle"   // GET → the bundle; mutual TLS (connectors) or admin token
)

// Query parameters.
const (
	QueryGroup = "group" // GET PathKeys, GET PathConnectors: only this group
	QueryName  = "name"  // GET PathKeys: only the key with this name
	QueryState = "state" // GET PathKeys: only keys with this stored state (KeyActive, KeyRevoked)
	QueryForce = "force" // DELETE PathGroup: "true" deletes its keys and revokes its connectors; DELETE PathKey: "true" deletes a key that enrolled connectors
)

// Path fills the {name} segment of a route with name, escaped as one path
// segment.
func Path(route, name string) string {
	return strings.Replace(route, "{name}", url.PathEscape(name), 1)
}
