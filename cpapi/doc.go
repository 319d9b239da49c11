// Package cpapi is the control plane's HTTP API as data: the request and
// response types of every endpoint with the JSON field names on the wire,
// the URL paths, the refusal codes, and *Error, the refusal that servers
// send and clients return.
//
// It is shared by the server (package controlplane), the admin client
// (cpclient) and the appliance's enrollment (firstboot/enroll), so that
// each name on the wire is written once. It ships in the appliance: it
// imports only the standard library and holds no behaviour beyond encoding
// — no HTTP handling, no transport, no storage. Which HTTP status a code
// answers with is the server's decision (controlplane/http.go); clients
// branch on the code:
//
//	var e *cpapi.Error
//	if errors.As(err, &e) && e.Code == cpapi.CodeKeyExhausted { … }
//	if cpapi.IsCode(err, cpapi.CodeKeyExhausted) { … }
package cpapi
