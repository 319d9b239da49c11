// Package connector is the appliance's agent after enrollment
// (outpost-connector): it heartbeats to the control plane over mutual TLS
// with the certificate first boot obtained, carrying the hardware
// fingerprint, version, uptime, addresses and clock skew; it renews the
// certificate before it expires; and it says on the console, in the
// journal and in /run/outpost/connector.json what state the connection is
// in and why.
//
// It reconnects with exponential backoff and jitter. A connector the
// control plane answers blocked (the fingerprint changed) or revoked waits
// minutes between attempts rather than retrying in a tight loop, and says
// what the admin must do.
//
// It does not enroll (package firstboot does, once) and ships in the
// appliance: like first boot it imports nothing of the builder, the server
// or govmomi.
package connector
