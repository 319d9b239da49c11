// Command outpost is the admin's CLI: it builds appliance images (image
// build, image pack), checks provisioning keys (key check), runs the control
// plane (server) and manages connector groups, provisioning keys and
// connectors through the control plane's API (groups, keys, connectors). It
// does not deploy appliances: the OVA it builds is imported with vSphere's
// own tools (govc import.ova, the vSphere client).
//
// main only wires the process to run; every command is a small struct in this
// package that parses its flags and calls a library package.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}
