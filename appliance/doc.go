// Package appliance is the connector appliance's contract: the rules that the
// image builder, the OVF writer, the vSphere deployer and first boot inside
// the appliance must agree on, written once.
//
// It holds the deployment-time properties (keys, types, the labels and
// choices the importer shows, and which ones the OVF descriptor declares),
// the hardware defaults (2 vCPU, 4096 MiB, 8 GiB thin disk, one NIC, UEFI)
// and their limits, the firmware and virtual hardware version names, the
// appliance and VM name rules, and VMware's manual MAC range with the
// deterministic MACs derived from a name.
//
// It is not for how those rules are applied: parsing image specs is package
// builder's job, writing OVF descriptors package ova's, reading and
// validating first-boot configuration package firstboot/config's. The
// package ships inside the appliance with first boot, so it imports only the
// standard library and holds data and small checks, never I/O.
package appliance
