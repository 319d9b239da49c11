package appliance

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Hardware defaults and limits (DESIGN.md, "Appliance defaults").
const (
	DefaultCPUs      = 2
	DefaultMemoryMiB = 4096
	// LabMemoryMiB is the least memory the appliance runs with, for labs
	// only: accepted with a warning.
	LabMemoryMiB = 2048

	DefaultDiskBytes int64 = 8 << 30
	// MinDiskBytes leaves room for the ESP, the GPT and a usable root.
	MinDiskBytes int64 = 1 << 30
	// MaxDiskBytes keeps within what the disk writers and ESXi's default
	// datastore block size handle.
	MaxDiskBytes int64 = 2 << 40

	// NICs is the number of NICs: the appliance has exactly one.
	NICs = 1

	DefaultFirmware        = FirmwareUEFI
	DefaultVirtualHardware = "vmx-14" // imports on ESXi 6.7 and later
)

// Disk provisioning: thin disks grow as written, thick ones are allocated
// at import.
const (
	ProvisioningThin  = "thin"
	ProvisioningThick = "thick"

	DefaultProvisioning = ProvisioningThin
)

// Firmware is the firmware an appliance boots with, named as image specs
// name it. The appliance's disk boots with systemd-boot, so UEFI is the only
// firmware it supports.
type Firmware string

// FirmwareUEFI is the appliance's firmware.
const FirmwareUEFI Firmware = "uefi"

// OVF returns the name OVF descriptors (vmw:Config virtualHW.firmware) and
// the vSphere API (VirtualMachineConfigSpec.Firmware) use: "efi" for UEFI.
// Other values are returned unchanged.
func (f Firmware) OVF() string {
	if f == FirmwareUEFI {
		return "efi"
	}
	return string(f)
}

// Virtual hardware versions an appliance may declare: those ESXi 5.5 to 8.0
// know.
const (
	MinVirtualHardware = 10
	MaxVirtualHardware = 21
)

// CheckVirtualHardware reports whether v is a VMware virtual hardware version
// (vmx-NN) between MinVirtualHardware and MaxVirtualHardware.
func CheckVirtualHardware(v string) error {
	if n, ok := strings.CutPrefix(v, "vmx-"); ok && len(n) == 2 && n[0] >= '0' && n[0] <= '9' && n[1] >= '0' && n[1] <= '9' {
		if x, _ := strconv.Atoi(n); x >= MinVirtualHardware && x <= MaxVirtualHardware {
			return nil
		}
	}
	return fmt.Errorf("%q is not a VMware virtual hardware version: use vmx-NN from vmx-%d to vmx-%d (vmx-14 for ESXi 6.7, vmx-13 for ESXi 6.5)",
		v, MinVirtualHardware, MaxVirtualHardware)
}

// MaxVMNameLen is the longest VM name: it also names the OVA's members
// (NAME.ovf, NAME.mf, NAME.cert), which a ustar header must hold.
const MaxVMNameLen = 95

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	vmNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
)

// CheckName reports whether name is a valid appliance name (the image
// spec's name, such as outpost-connector): a DNS label of lower-case letters,
// digits and '-'.
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%q is not a valid name: use 1–63 lower-case letters, digits and '-', not starting or ending with '-'", name)
	}
	return nil
}

// CheckVMName reports whether name can name an appliance's VM, such as
// Melbourne-1, and the files of its OVA.
func CheckVMName(name string) error {
	if !vmNameRE.MatchString(name) || len(name) > MaxVMNameLen {
		return fmt.Errorf("%q must be at most %d characters, start with a letter or digit and hold only letters, digits, '.', '_' and '-'", name, MaxVMNameLen)
	}
	return nil
}
