// Command outpost is the admin's CLI: it builds appliance images, checks
// provisioning keys, runs the control plane and deploys connectors.
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
