package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/imagebuild"
	"github.com/outpost-appliance/outpost/lab"
)

var labEntries = []entry{
	{Path: "lab console", Args: "NAME", Summary: "Attach to a lab VM's serial console (Ctrl-D ends)", Examples: "outpost lab console vm1\noutpost lab console Lab-2", New: func() command { return &labNameCmd{verb: "console"} }},
	{Path: "lab down", Summary: "Stop the lab and remove its VMs, network and control plane", Long: "Stops every process the lab started, by PID, and removes the VMs' overlays, the taps and the network namespace. The base image stays in the cache.", Examples: "outpost lab down", New: func() command { return &labDownCmd{} }},
	{Path: "lab start", Args: "NAME", Summary: "Power a stopped lab VM on again", Examples: "outpost lab start Lab-1", New: func() command { return &labNameCmd{verb: "start"} }},
	{Path: "lab status", Summary: "Show the lab's VMs and their connectors", Examples: "outpost lab status\noutpost lab status --json", New: func() command { return &labStatusCmd{} }},
	{Path: "lab stop", Args: "NAME", Summary: "Power a lab VM off (a failure drill)", Long: "The control plane shows the connector unreachable after three missed heartbeats (30 s) while the others stay healthy; 'outpost lab start NAME' brings it back with the same name and no second enrollment.", Examples: "outpost lab stop Lab-1", New: func() command { return &labNameCmd{verb: "stop"} }},
	{Path: "lab up", Summary: "Start a control plane and a connector pair under QEMU", Long: `Starts a control plane and N connector appliances under QEMU with OVMF on
this machine, in a network of their own (a bridge with DHCP, DNS for
cp.lab.test, and NTP; nothing routes out: a network namespace as root, a user
namespace of the lab's own without root), creates the group "lab" and
the key "Lab" with exactly N uses, gives each VM the key through fw_cfg, and
waits until every VM is healthy, showing each one's progress. Each VM runs
on a qcow2 overlay of the base image, with its own static MAC and its serial
console logged in the lab directory. KVM is used when /dev/kvm works, TCG
otherwise. Without --image the appliance is built from the embedded spec
(the root filesystem comes from the builder's cache). --bridge NAME (root)
puts the VMs on a LAN bridge of this machine instead.`,
		Examples: "outpost lab up --pair\noutpost lab up --count 3 --memory 2048 --image out/outpost-connector-0.1.0.qcow2\nsudo outpost lab up --bridge br0 --config /var/lib/outpost/admin.conf", New: func() command { return &labUpCmd{} }},
}

type labDirOpt struct{ dir string }

func (o *labDirOpt) register(fs *pflag.FlagSet) {
	fs.StringVar(&o.dir, "dir", "", "the lab's directory (default $XDG_DATA_HOME/outpost/lab or ~/.local/share/outpost/lab)")
}

func (o *labDirOpt) path() string {
	if o.dir != "" {
		return o.dir
	}
	return lab.DefaultDir()
}

type labUpCmd struct {
	labDirOpt
	count  int
	pair   bool
	image  string
	memory int
	key    string
	bridge string
	config string
	json   bool
}

func (c *labUpCmd) Register(fs *pflag.FlagSet) {
	fs.IntVar(&c.count, "count", 0, "number of connector VMs (default 2)")
	fs.BoolVar(&c.pair, "pair", false, "two VMs, as deployment guides recommend (same as --count 2)")
	fs.StringVar(&c.image, "image", "", "the appliance's qcow2 (default: built from the embedded spec)")
	fs.IntVar(&c.memory, "memory", appliance.DefaultMemoryMiB, "memory per VM in MiB (2048 for small machines: lab only)")
	fs.StringVar(&c.key, "key", "", "a provisioning key for the lab's control plane instead of a new one")
	fs.StringVar(&c.bridge, "bridge", "", "put the VMs on this Linux bridge (a real LAN with DHCP and DNS) instead of the lab's own network; needs root")
	fs.StringVar(&c.config, "config", "", "admin.conf of another control plane to use (with --bridge) instead of starting one")
	fs.BoolVar(&c.json, "json", false, "print the result as JSON")
	c.labDirOpt.register(fs)
}

func (c *labUpCmd) Run(ctx context.Context, s streams, args []string) error {
	if len(args) > 0 {
		return usagef("lab up takes no arguments")
	}
	switch {
	case c.pair && c.count != 0 && c.count != 2:
		return usagef("lab up: --pair is two VMs; give --pair or --count %d, not both", c.count)
	case c.pair:
		c.count = 2
	case c.count == 0:
		c.count = 2
	}
	if c.count < 1 || c.count > 20 {
		return usagef("lab up: --count %d: give 1 to 20", c.count)
	}
	if c.memory < appliance.LabMemoryMiB {
		return usagef("lab up: --memory %d MiB is too little: the appliance needs at least %d MiB", c.memory, appliance.LabMemoryMiB)
	}
	if c.config != "" && c.bridge == "" {
		return usagef("lab up: --config needs --bridge: the lab's own network reaches only the lab's own control plane")
	}
	if c.bridge != "" && os.Geteuid() != 0 {
		return usagef("lab up: --bridge %s needs root (it adds taps to the bridge); run it with sudo", c.bridge)
	}
	if err := lab.Check(c.count, c.memory); err != nil {
		return err
	}
	image := c.image
	if image == "" {
		built, err := buildLabImage(ctx, s)
		if err != nil {
			return err
		}
		image = built
	}
	st, err := lab.Up(ctx, lab.Options{Dir: c.path(), Count: c.count, Image: image, MemoryMiB: c.memory, Key: c.key,
		Bridge: c.bridge, Config: c.config, Progress: s.Err})
	if st != nil && err == nil {
		if c.json {
			return printJSON(s.Out, st)
		}
		fmt.Fprintf(s.Err, "lab: every VM is healthy; control plane %s (admin config %s) in %s\n", st.ControlPlane, st.AdminConf, st.Network)
		return st.WriteTable(s.Out)
	}
	return err
}

// buildLabImage builds the appliance from the embedded spec into the
// cache, where `lab down` leaves it.
func buildLabImage(ctx context.Context, s streams) (string, error) {
	out := imagebuild.DefaultImageDir()
	fmt.Fprintf(s.Err, "lab: building the appliance into %s\n", out)
	return imagebuild.ConnectorQCOW2(ctx, imagebuild.Request{OutDir: out, Log: s.Err, SourceDateEpoch: os.Getenv("SOURCE_DATE_EPOCH")})
}

type labStatusCmd struct {
	labDirOpt
	json bool
}

func (c *labStatusCmd) Register(fs *pflag.FlagSet) {
	fs.BoolVar(&c.json, "json", false, "print the status as JSON")
	c.labDirOpt.register(fs)
}

func (c *labStatusCmd) Run(ctx context.Context, s streams, args []string) error {
	if len(args) > 0 {
		return usagef("lab status takes no arguments")
	}
	st, err := lab.GetStatus(ctx, c.path())
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(s.Out, st)
	}
	fmt.Fprintf(s.Err, "lab in %s: control plane %s in %s (%s)\n", st.Dir, st.ControlPlane, st.Network, st.Accel)
	return st.WriteTable(s.Out)
}

type labDownCmd struct{ labDirOpt }

func (c *labDownCmd) Register(fs *pflag.FlagSet) { c.labDirOpt.register(fs) }
func (c *labDownCmd) Run(ctx context.Context, s streams, args []string) error {
	if len(args) > 0 {
		return usagef("lab down takes no arguments")
	}
	if err := lab.Down(c.path()); err != nil {
		return err
	}
	fmt.Fprintf(s.Err, "lab in %s stopped and removed; the base image stays cached\n", c.path())
	return nil
}

type labNameCmd struct {
	labDirOpt
	verb string
}

func (c *labNameCmd) Register(fs *pflag.FlagSet) { c.labDirOpt.register(fs) }
func (c *labNameCmd) Run(ctx context.Context, s streams, args []string) error {
	name, err := oneName("lab "+c.verb, args)
	if err != nil {
		return err
	}
	switch c.verb {
	case "stop":
		if err := lab.Stop(ctx, c.path(), name); err != nil {
			return err
		}
		fmt.Fprintf(s.Err, "%s powered off; the control plane shows it unreachable after three missed heartbeats\n", name)
	case "start":
		if err := lab.Start(ctx, c.path(), name); err != nil {
			return err
		}
		fmt.Fprintf(s.Err, "%s powered on; 'outpost lab status' shows when it is healthy again\n", name)
	case "console":
		fmt.Fprintf(s.Err, "%s serial console; end with Ctrl-D\n", name)
		return lab.Console(ctx, c.path(), name, s.In, s.Out)
	}
	return nil
}
