package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/spf13/pflag"
)

type groupFlags struct {
	location string
	day      string
	hour     int
}

func (g *groupFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&g.location, "location", "", "where the group's connectors run (free text)")
	fs.StringVar(&g.day, "window-day", "", "day of the weekly 4-hour upgrade window: sun, mon, … sat (default sun)")
	fs.IntVar(&g.hour, "window-hour", 2, "start hour (0-23, UTC) of the upgrade window")
}

func (g *groupFlags) spec(fs *pflag.FlagSet, name string) cpapi.GroupSpec {
	sp := cpapi.GroupSpec{Name: name}
	if fs.Changed("location") {
		sp.Location = &g.location
	}
	if fs.Changed("window-day") {
		sp.WindowDay = &g.day
	}
	if fs.Changed("window-hour") {
		sp.WindowHour = &g.hour
	}
	return sp
}

func printGroupDetail(w io.Writer, g cpapi.Group) {
	fmt.Fprintf(w, "Name:            %s\nLocation:        %s\nUpgrade window:  %s\nKeys:            %d\nConnectors:      %d\nCreated:         %s\n",
		safe(g.Name), safe(g.Location), window(g), g.Keys, g.Connectors, g.CreatedAt.Format("2006-01-02 15:04 UTC"))
}

func window(g cpapi.Group) string {
	if g.WindowDay < 0 || g.WindowDay >= len(cpapi.Days) {
		return fmt.Sprintf("day %d? %02d:00 UTC", g.WindowDay, g.WindowHour)
	}
	return fmt.Sprintf("%s %02d:00–%02d:00 UTC", cpapi.Days[g.WindowDay], g.WindowHour, (g.WindowHour+4)%24)
}

type groupsCreateCmd struct {
	adminOpts
	groupFlags
	fs *pflag.FlagSet
}

func (c *groupsCreateCmd) Register(fs *pflag.FlagSet) {
	c.fs = fs
	c.adminOpts.register(fs)
	c.groupFlags.register(fs)
}
func (c *groupsCreateCmd) Run(ctx context.Context, s streams, args []string) error {
	name, err := oneName("groups create", args)
	if err != nil {
		return err
	}
	cl, err := c.client(s)
	if err != nil {
		return err
	}
	g, err := cl.CreateGroup(ctx, c.spec(c.fs, name))
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(s.Out, g)
	}
	printGroupDetail(s.Out, g)
	return nil
}

type groupsEditCmd struct{ groupsCreateCmd }

func (c *groupsEditCmd) Run(ctx context.Context, s streams, args []string) error {
	name, err := oneName("groups edit", args)
	if err != nil {
		return err
	}
	if !c.fs.Changed("location") && !c.fs.Changed("window-day") && !c.fs.Changed("window-hour") {
		return usagef("groups edit: nothing to change; pass --location, --window-day or --window-hour")
	}
	cl, err := c.client(s)
	if err != nil {
		return err
	}
	g, err := cl.EditGroup(ctx, c.spec(c.fs, name))
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(s.Out, g)
	}
	printGroupDetail(s.Out, g)
	return nil
}

type groupsListCmd struct{ adminOpts }

func (c *groupsListCmd) Register(fs *pflag.FlagSet) { c.adminOpts.register(fs) }
func (c *groupsListCmd) Run(ctx context.Context, s streams, args []string) error {
	if len(args) > 0 {
		return usagef("groups list takes no arguments")
	}
	cl, err := c.client(s)
	if err != nil {
		return err
	}
	gs, err := cl.Groups(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(s.Out, gs)
	}
	tw := tabwriter.NewWriter(s.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tLOCATION\tUPGRADE WINDOW\tKEYS\tCONNECTORS")
	for _, g := range gs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\n", safe(g.Name), safe(g.Location), window(g), g.Keys, g.Connectors)
	}
	return tw.Flush()
}

type groupsShowCmd struct{ adminOpts }

func (c *groupsShowCmd) Register(fs *pflag.FlagSet) { c.adminOpts.register(fs) }
func (c *groupsShowCmd) Run(ctx context.Context, s streams, args []string) error {
	name, err := oneName("groups show", args)
	if err != nil {
		return err
	}
	cl, err := c.client(s)
	if err != nil {
		return err
	}
	g, err := cl.Group(ctx, name)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(s.Out, g)
	}
	printGroupDetail(s.Out, g)
	return nil
}

type groupsDeleteCmd struct {
	adminOpts
	force bool
}

func (c *groupsDeleteCmd) Register(fs *pflag.FlagSet) {
	c.adminOpts.register(fs)
	fs.BoolVar(&c.force, "force", false, "delete even if the group has keys (deleted) or connectors (revoked)")
}
func (c *groupsDeleteCmd) Run(ctx context.Context, s streams, args []string) error {
	name, err := oneName("groups delete", args)
	if err != nil {
		return err
	}
	cl, err := c.client(s)
	if err != nil {
		return err
	}
	out, err := cl.DeleteGroup(ctx, name, c.force)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(s.Out, out)
	}
	fmt.Fprintf(s.Err, "group %s deleted\n", name)
	return nil
}
