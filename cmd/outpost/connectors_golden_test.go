package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/cpapi"
)

// TestConnectorOutputGolden: list and show print the health the control
// plane derived (with how long ago an unreachable connector was seen), the
// first address, the skew and the reason, escaping what connectors sent.
func TestConnectorOutputGolden(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	enrolled := now.Add(-48 * time.Hour)
	exp := time.Date(2027, 11, 20, 12, 0, 0, 0, time.UTC)
	base := cpapi.Connector{KeyID: "16ae02bf1ad591a2", KeyName: "Melbourne", Group: "melb", SigningCA: "Connector", Fingerprint: "mac=00:50:56:00:00:01;uuid=4210-aa",
		Serial: "5f3a", CertExpires: exp, EnrolledAt: enrolled, State: "active"}
	c := func(name string, f func(*cpapi.Connector)) cpapi.Connector {
		x := base
		x.Name = name
		f(&x)
		return x
	}
	cs := []cpapi.Connector{
		c("Melbourne-1", func(x *cpapi.Connector) {
			x.Health, x.LastSeen, x.Version, x.Uptime, x.Addresses, x.Skew = "healthy", now.Add(-4*time.Second), "1.4.2", 3600, []string{"192.0.2.10/24", "2001:db8::10/64"}, 0.002
		}),
		c("Melbourne-2", func(x *cpapi.Connector) {
			x.Health, x.LastSeen, x.Version, x.Addresses, x.Skew = "unreachable", now.Add(-2*time.Minute-10*time.Second), "1.4.2", []string{"192.0.2.11/24"}, -1.25
		}),
		c("Melbourne-3", func(x *cpapi.Connector) {
			x.Health, x.State, x.LastSeen, x.Version, x.Addresses = "blocked", "blocked", now.Add(-time.Second), "1.4.1\x1b[31m", []string{"192.0.2.12/24"}
			x.StateReason = "the hardware fingerprint changed: mac changed from 00:50:56:00:00:01 to 00:50:56:00:00:02"
		}),
		c("Melbourne-4", func(x *cpapi.Connector) {
			x.Health, x.State, x.StateReason, x.LastSeen, x.Version = "revoked", "revoked", "revoked by the admin", now.Add(-30*time.Hour), "1.4.0"
		}),
		c("Melbourne-5", func(x *cpapi.Connector) { x.Health, x.Addresses = "never seen", []string{} }),
	}
	var b bytes.Buffer
	if err := printConnectorTable(&b, cs, now); err != nil {
		t.Fatal(err)
	}
	golden(t, "connectors-list.txt", b.String())
	for _, x := range []struct {
		file string
		c    cpapi.Connector
	}{{"connectors-show.txt", cs[0]}, {"connectors-show-unreachable.txt", cs[1]}, {"connectors-show-blocked.txt", cs[2]}, {"connectors-show-never.txt", cs[4]}} {
		b.Reset()
		printConnector(&b, x.c, now)
		golden(t, x.file, b.String())
	}
}
