// Package controlplane is the outpost control plane: connector groups,
// provisioning keys, enrollment of appliances and their heartbeats, served
// over HTTPS as JSON. Its state lives in package store; its CAs in pki.
//
// The API's shapes — request and response types with their JSON names, the
// route paths and the refusal codes — are package cpapi, shared with the
// admin client (cpclient) and the appliance (firstboot/enroll). The Service
// answers in cpapi types and refuses with *cpapi.Error (a code and a
// sentence, no status); the HTTP layer (Handler) alone turns a code into
// the status listed below.
//
// # Enrollment API (for appliances; no admin token)
//
// POST /api/v1/enroll, over TLS verified against the pin in the key:
//
//	{"key": "<provisioning key>", "csr": "<PEM PKCS#10>", "fingerprint": "mac=…;uuid=…", "nonce": "<string>"}
//
// 200 answers {"name": "Melbourne-1", "group": "…", "certificate": "<PEM: leaf, signing CA, root>"}.
// The use is counted in the transaction that records the certificate. The
// same key with the same CSR public key again (a retry after a lost answer)
// returns the same name and certificate and consumes no use.
//
// Client notes. The server's TLS chain is the serving certificate followed
// by the root CA: verify that the last certificate's SubjectPublicKeyInfo
// has the key's pin (provkey.Pin.Matches) and that it signed the leaf; a
// chain without that root means something in between (SSL inspection).
// Keep the key pair and reuse the same CSR when retrying after a timeout or
// a 5xx: the retry is recognised by the CSR's public key, not by the nonce,
// and a new key pair would consume a second use. Unknown JSON fields are
// refused (400), so send exactly these four.
//
// Every refusal is {"error": "<code>", "message": "<sentence for a person>"}:
//
//	400 bad_request     malformed JSON, unknown or missing fields
//	413 too_large       body over 64 KiB
//	401 invalid_key     malformed key, unknown key id, or a wrong secret: one
//	                    sentence for all, naming no key (details in the server log)
//	400 wrong_host      the key names another control plane (host or CA pin)
//	403 key_revoked     the key was revoked
//	403 key_expired     the key's expiry has passed
//	403 key_exhausted   use_count reached max_uses
//	400 bad_csr         not PEM PKCS#10, bad signature, RSA < 2048, unsupported curve
//	403 connector_revoked  the same key pair enrolled before and was revoked
//	429 rate_limited    a wrong key after 10 invalid_key failures from one IP
//	                    with the same key id within a minute (a valid key
//	                    is never refused because of others' failures)
//	500 internal        see the server log
//
// # Heartbeat (mutual TLS with the enrolled certificate chain)
//
// POST /api/v1/heartbeat {"fingerprint": "…", "version": "…", "uptime": SECONDS,
// "addresses": ["192.0.2.10/24"], "skew": SECONDS} answers 200 {"name",
// "state": "active", "server_time", "interval": SECONDS}. A fingerprint
// different from the enrolled one answers 403 {"error": "blocked",
// "message": "… mac changed from X to Y …"} and marks the connector blocked
// (fingerprints are key=value pairs separated by ';'); the enrolled
// fingerprint again makes it active. A revoked connector gets 403
// connector_revoked; no client certificate gets 401 unauthorized.
//
// Heartbeats are coalesced in memory and written once a second in one
// transaction (store.FlushInterval); the store's reads show them at once.
// The connector holding a certificate is cached on SQLite (not on
// PostgreSQL, where another process may revoke), and every change of a
// connector's state or certificate through the store invalidates it, so a
// revocation takes effect on the next heartbeat.
//
// POST /api/v1/renew {"csr", "fingerprint"} over the same mutual TLS
// answers {"certificate": "<PEM: leaf, signing CA, root>"} for the CSR's
// key pair, signed by the connector's signing CA. The certificate
// presented stays accepted (heartbeat and renew) until a heartbeat comes
// with the new one; a retry with the same CSR public key gets the same
// certificate. Refusals are the heartbeat's (connector_revoked, blocked)
// and bad_csr.
//
// Connector health (cpapi.Connector.Health) is derived in one place,
// Service.health: revoked, blocked, never seen, unreachable after
// cpapi.UnreachableAfter heartbeat intervals (Service.Interval, default
// 10 s) without a heartbeat, else healthy.
//
// What a connector reports is shown to admins, so enrollment and heartbeat
// check it against cpapi's grammar (CheckFingerprint, CheckVersion,
// CheckNonce) and refuse anything else — control characters above all —
// with 400 bad_request naming the field.
//
// # Admin API (Authorization: Bearer TOKEN from DATA/admin.conf)
//
// DATA/admin.conf is written on first start. Later starts bring a field
// (server, token, ca) up to date only while it still holds what the server
// last wrote (remembered in DATA/.admin.conf.written): an admin's edit,
// such as a server URL that resolves where --hostname does not, is kept.
//
//	GET/POST /api/v1/groups, GET/PATCH/DELETE /api/v1/groups/{name}[?force=true]
//	GET /api/v1/keys[?group=&name=&state=], POST /api/v1/keys {name, group, max_uses, expires_in, signing_ca}
//	GET/PATCH {max_uses}/DELETE /api/v1/keys/{name}[?force=true] (force: the key enrolled connectors)
//	POST /api/v1/keys/{name}/reveal | regenerate | revoke
//	GET /api/v1/connectors[?group=], GET /api/v1/connectors/{name}, POST /api/v1/connectors/{name}/revoke
//	GET /healthz (no token): 200 {"status": "ok"}, or 503 unhealthy when the database does not answer
//
// # Files
//
// The data directory is private (0700), and so are its secrets (0600):
// admin.token, secrets.key, admin.conf and the CA keys under pki/. Open
// refuses to start while any of them, or a directory holding them, is open
// to group or others, naming each and the chmod that fixes it. Secrets are
// created whole (atomicfile) and checked when read, so an empty or partial
// file left by a crash is reported, never used. The SQLite database and its
// -wal and -shm files are 0600 whatever the umask.
//
// Processes that share one PostgreSQL database act as one control plane
// when they share the data directory's CAs and secrets (copy DATA to each);
// a server refuses to start on a database initialised by another CA. The
// failure counts behind rate_limited live in the database (enroll_failures),
// so the limit holds across them. A key secret has 128 bits or more: the
// limit is there to slow a client with a bad copy and bound the work and
// log lines it costs, not to stop guessing.
//
// A wrong admin token is logged at most once per source and minute, with
// the number of lines suppressed since.
//
// A missing or wrong token answers 401 unauthorized. Other admin refusals:
// 404 not_found, 409 exists, 409 conflict, 409 key_exhausted (reveal of a
// used-up key), 400 bad_request. A known path with another method answers
// 405 method_not_allowed with an Allow header.
package controlplane
