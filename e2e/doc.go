// Package e2e holds the end-to-end tests of the connector appliance: the
// image built from images/connector/image.yaml boots under QEMU with OVMF
// on a tap in a network namespace the test makes, with dnsmasq (DHCP, DNS)
// and chronyd (NTP) there, and enrolls with the real `outpost server`.
// It has no code outside its tests.
package e2e
