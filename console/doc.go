// Package console is the control plane's admin web console: sign-in (the
// admin token, or a password set with 'outpost admin passwd'), the
// Provisioning Keys, Connector Groups and Connectors pages and the Add
// Connector wizard. Pages are html/template with CSS and a little
// JavaScript embedded in the binary; there is no front-end build step, and
// every page reads without JavaScript.
//
// The console runs in the control plane's process and calls its
// controlplane.Service directly; the rules (key state, connector health,
// names) stay in the service and in cpapi. Mount puts the console at / next
// to the API (/api/v1/, /healthz).
//
// It is not an API: scripts use the JSON API (cpclient). Sessions live in
// the memory of one server process: behind a load balancer with several
// servers, sign-in needs sticky sessions.
package console
