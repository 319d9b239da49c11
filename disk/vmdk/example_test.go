package vmdk_test

import (
	"fmt"
	"log"
	"os"

	"github.com/outpost-appliance/outpost/disk"
	"github.com/outpost-appliance/outpost/disk/vmdk"
)

// Convert a raw disk to the VMDK an OVA carries; Info gives the sizes the
// OVF descriptor declares (ovf:capacity, ovf:populatedSize) and the tar
// member's size.
func ExampleWrite() {
	img, err := disk.OpenRaw("appliance.raw")
	if err != nil {
		log.Fatal(err)
	}
	defer img.Close()
	f, err := os.Create("appliance-disk1.vmdk")
	if err != nil {
		log.Fatal(err)
	}
	info, err := vmdk.Write(f, img, vmdk.Options{ExtentName: "appliance-disk1.vmdk"})
	if err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
	fmt.Println(info.Capacity, info.Populated, info.Written)
}
