package firstboot

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/firstboot/config"
	"github.com/outpost-appliance/outpost/firstboot/netconf"
	"github.com/outpost-appliance/outpost/firstboot/sysroot"
)

// stateV1 is a state file as outpost-firstboot wrote it before the stages'
// results were typed: killed in the enroll stage after the network and
// clock were done.
const stateV1 = `{
  "version": 1,
  "done": {"config": "2026-01-02T03:04:05Z", "network": "2026-01-02T03:04:06Z", "time": "2026-01-02T03:04:07Z"},
  "stage": "enroll",
  "config": {"has_key": true, "hostname": "conn-a", "ipv4_mode": "DHCP"},
  "interface": "eth0",
  "mac": "00:50:56:00:12:34",
  "network": {"address": "192.0.2.50/24", "router": "192.0.2.1", "dns": ["192.0.2.53"], "ntp": ["192.0.2.123"]},
  "time": {"server": "192.0.2.123", "offset": 5000000000, "rtt": 1000000, "stratum": 2, "stepped": true},
  "clock_correction": 5000000000,
  "enroll": {"csr": "CSR", "nonce": "N", "key_id": "K"},
  "updated": "2026-01-02T03:04:08Z"
}
`

func TestStateFileCompatible(t *testing.T) {
	dir := t.TempDir()
	root, _ := sysroot.New(dir)
	p := filepath.Join(dir, StateFile)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(stateV1), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := LoadState(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.Done[StageNetwork]; !ok || st.Stage != StageEnroll {
		t.Errorf("done %v, stage %q", st.Done, st.Stage)
	}
	if st.Interface != "eth0" || st.MAC != "00:50:56:00:12:34" || st.Network == nil || st.Network.Address.String() != "192.0.2.50/24" {
		t.Errorf("networking = %+v", st.Networking)
	}
	if st.Time == nil || st.Time.Server != "192.0.2.123" || st.ClockCorrection != 5*time.Second || st.Enroll.Nonce != "N" {
		t.Errorf("time = %+v, enroll = %+v", st.TimeCheck, st.Enroll)
	}
	// Written back, the fields keep their places for an older binary.
	if err := st.Save(root, time.Now()); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"version", "done", "stage", "config", "interface", "mac", "network", "time", "clock_correction", "enroll", "updated"} {
		if _, ok := m[k]; !ok {
			t.Errorf("saved state lacks %q:\n%s", k, b)
		}
	}
}

func TestNetworkingResolve(t *testing.T) {
	lease := &netconf.Lease{DNS: []netip.Addr{netip.MustParseAddr("192.0.2.53")}, Search: []string{"lease.example"}, NTP: []string{"192.0.2.123"}}
	cfgDNS := []netip.Addr{netip.MustParseAddr("198.51.100.53")}
	cases := []struct {
		name   string
		cfg    config.Config
		lease  *netconf.Lease
		dns    []netip.Addr
		search []string
		ntp    []string
	}{
		{"lease", config.Config{}, lease, lease.DNS, lease.Search, lease.NTP},
		{"config wins", config.Config{DNSServers: cfgDNS, NTPServers: []string{"ntp.example"}}, lease, cfgDNS, lease.Search, []string{"ntp.example"}},
		{"no lease", config.Config{DNSSearch: []string{"cfg.example"}}, nil, nil, []string{"cfg.example"}, nil},
	}
	for _, c := range cases {
		n := Networking{Network: c.lease}.resolve(&c.cfg)
		if !slices.Equal(n.DNS, c.dns) || !slices.Equal(n.Search, c.search) || !slices.Equal(n.NTP, c.ntp) {
			t.Errorf("%s: dns %v search %v ntp %v", c.name, n.DNS, n.Search, n.NTP)
		}
	}
}
