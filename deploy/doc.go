// Package deploy puts connector pairs on vSphere (vCenter or a standalone
// ESXi host) with govmomi: it plans names, deterministic manual MACs,
// placement and per-VM OVF properties; uploads the OVA's disk once (a
// template or, with Config.Library, a content library item on vCenter; a
// powered-off source VM on ESXi; the OVA a file or a streamed URL); makes each VM from
// it with EFI, the appliance's hardware, its NIC and properties (vApp config
// on vCenter, the OVF environment in guestinfo.ovfEnv on ESXi, chosen from
// the API type); adds a DRS anti-affinity rule on a cluster; tags every
// object it makes in extraConfig so that a rerun completes what is missing
// and Destroy removes only what it made; powers on and waits.
//
// It does not parse flags or print: progress goes to Config.Log.
package deploy
