// Command maketestrootfs writes the boot test's root filesystem (Debian's
// cloud kernel, an initrd with images/testinit) into a directory, for
// trying `outpost image build` by hand. Run it from the repository root:
// scripts/testrootfs.sh DIR [MARKER].
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/outpost-appliance/outpost/builder/internal/testrootfs"
)

func main() {
	if len(os.Args) < 2 || len(os.Args) > 3 {
		fmt.Fprintln(os.Stderr, "usage: maketestrootfs DIR [MARKER]")
		os.Exit(2)
	}
	marker := "outpost-test-rootfs"
	if len(os.Args) == 3 {
		marker = os.Args[2]
	}
	repo, err := os.Getwd()
	if err == nil {
		err = os.MkdirAll(os.Args[1], 0o755)
	}
	var kver string
	if err == nil {
		kver, err = testrootfs.Make(context.Background(), os.Args[1], repo, marker)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "maketestrootfs: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("%s: kernel %s, marker %q\n", os.Args[1], kver, marker)
}
