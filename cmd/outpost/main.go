// Command outpost is the admin's CLI: it builds appliance images (image
// build, image pack), checks provisioning keys (key check), runs the control
// plane (server) and its web console, manages connector groups, provisioning
// keys and connectors through the control plane's API (groups, keys,
// connectors), deploys connector pairs to vSphere (deploy) and runs a lab of
// connectors under QEMU (lab).
//
// main only wires the process to run; every command is a small struct in this
// package that parses its flags and calls a library package.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/outpost-appliance/outpost/lab"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == lab.HolderArg {
		// Not a command: the lab's namespace holder, started by `lab up`
		// without root under unshare.
		err := lab.RunHolder(os.Args[2]) // returns only on failure
		fmt.Fprintf(os.Stderr, "outpost lab holder: %v\n", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}
