// Package ova packages a bootable disk into an OVA that vSphere (ESXi and
// vCenter), govc and VirtualBox import: an OVF 1.0 descriptor, a SHA256
// manifest, an optional signature (.cert) and the disks, in a deterministic
// ustar archive.
//
// The descriptor is modelled with govmomi's ovf types and serialised here,
// because those types carry no XML namespaces and vSphere requires them. It
// declares the appliance's hardware (CPUs, memory, SCSI controller and disks,
// a vmxnet3 NIC with a manual MAC, EFI firmware), both OVF environment
// transports (ISO and VMware guestinfo) and the deployment-time properties the
// admin is prompted for; their keys are the Prop* constants, which the
// first-boot program reads back from ovf-env.xml.
//
// What importers do with it: vCenter prompts for the properties (the
// provisioning key masked) and delivers them in ovf-env.xml on a CD-ROM or in
// guestinfo.ovfEnv; the ESXi host client ignores ProductSection properties,
// so standalone hosts need another config source. The manual MAC is
// rasd:Address on the NIC item, as vSphere exports it. govmomi's simulator
// (vcsim) reads neither rasd:Address nor the firmware vmw:Config, and govc's
// import options have no field for a MAC, so a deployer that must guarantee
// them sets them on the import spec (VirtualEthernetCard MacAddress with
// AddressType "manual", ConfigSpec Firmware) from the parsed descriptor;
// TestGovcImport does the equivalent with govc and the vSphere API.
//
// It only assembles OVAs: the disk formats (VMDK, qcow2, raw) are siblings
// under package disk (disk/vmdk writes the VMDK an OVA carries). This
// package takes finished disk files and never reads a disk into memory.
package ova
