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
	version  string
	down     bool
}

func (g *groupFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&g.location, "location", "", "where the group's connectors run (free text)")
	fs.StringVar(&g.day, "window-day", "", "day of the weekly 4-hour upgrade window: sun, mon, … sat (default sun)")
	fs.IntVar(&g.hour, "window-hour", 2, "start hour (0-23, UTC) of the upgrade window")
	fs.StringVar(&g.version, "version", "", "release the group's connectors are upgraded to: a published version, or latest (default latest)")
	fs.BoolVar(&g.down, "allow-downgrade", false, "with --version: also bring connectors that run a newer version down to it (they refuse an older release otherwise)")
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
	if fs.Changed("version") {
		sp.TargetVersion = &g.version
	}
	if fs.Changed("allow-downgrade") {
		sp.AllowDowngrade = &g.down
	}
	return sp
}

func printGroupDetail(w io.Writer, g cpapi.Group) {
	fmt.Fprintf(w, "Name:            %s\nLocation:        %s\nUpgrade window:  %s\nKeys:            %d\nConnectors:      %d\nCreated:         %s\n",
		safe(g.Name), safe(g.Location), window(g), g.Keys, g.Connectors, g.CreatedAt.Format("2006-01-02 15:04 UTC"))
	if g.Rollout != nil {
		printRollout(w, g)
	}
}

// printRollout shows a group's rollout: the target, the state and why,
// the window, and one line per connector.
func printRollout(w io.Writer, g cpapi.Group) {
	ro := g.Rollout
	target := safe(g.TargetVersion) + " (pinned)"
	if g.AllowDowngrade {
		target = safe(g.TargetVersion) + " (pinned, downgrades allowed)"
	}
	if g.TargetVersion == "" {
		target = "latest (" + safe(orDash(ro.Target)) + ")"
	}
	fmt.Fprintf(w, "Target version:  %s\n", target)
	state := safe(ro.State)
	if ro.Reason != "" {
		state += ": " + safe(ro.Reason)
	}
	fmt.Fprintf(w, "Rollout:         %s\n", state)
	win := "closed, opens " + ro.NextWindow.UTC().Format("Mon 2006-01-02 15:04 UTC")
	if ro.WindowOpen {
		win = "open"
	}
	if ro.Now {
		win += "; started now by an admin (runs outside the window until done)"
	}
	fmt.Fprintf(w, "  Window:        %s\n", win)
	if ro.State == cpapi.RolloutStopped {
		fmt.Fprintf(w, "  To resume:     outpost upgrade --group %s --now, or change the version (outpost groups edit %s --version V)\n", safe(g.Name), safe(g.Name))
	}
	if len(ro.Connectors) == 0 {
		fmt.Fprintf(w, "  (no connectors)\n")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range ro.Connectors {
		detail := safe(c.Detail)
		if !c.Since.IsZero() {
			detail += " (ordered " + seen(c.Since) + ")"
		}
		line := fmt.Sprintf("  %s\t%s\t%s\t%s", safe(c.Name), safe(orDash(c.Version)), safe(c.Health), safe(c.Status))
		if detail != "" {
			line += "\t" + detail
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
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
	if !c.fs.Changed("location") && !c.fs.Changed("window-day") && !c.fs.Changed("window-hour") && !c.fs.Changed("version") {
		return usagef("groups edit: nothing to change; pass --location, --window-day, --window-hour or --version")
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
