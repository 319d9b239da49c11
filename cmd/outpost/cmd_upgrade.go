package main

import (
	"context"

	"github.com/spf13/pflag"
)

var upgradeEntry = entry{
	Path:    "upgrade",
	Summary: "Start a group's rolling upgrade now, outside its window",
	Long: `Connectors are upgraded on their own inside their group's weekly window: one
at a time, only while every connector of the group is healthy, to the group's
version (outpost groups edit G --version V|latest). --now starts the rollout at
once instead, with the same rules, until every connector runs the target; it
also resumes a rollout that stopped because a connector failed (fix the cause
first: 'outpost groups show G' says which connector failed and why).

--now is required: without it there is nothing to do that the window does not
already do, and an upgrade outside the window should be a deliberate act.`,
	Examples: `outpost upgrade --group melbourne --now
outpost upgrade --group melbourne --now --json`,
	New: func() command { return &upgradeCmd{} },
}

type upgradeCmd struct {
	adminOpts
	group string
	now   bool
}

func (c *upgradeCmd) Register(fs *pflag.FlagSet) {
	fs.StringVar(&c.group, "group", "", "the group to upgrade (required)")
	fs.BoolVar(&c.now, "now", false, "start now, outside the group's window (required)")
	c.adminOpts.register(fs)
}

func (c *upgradeCmd) Run(ctx context.Context, s streams, args []string) error {
	if len(args) > 0 {
		return usagef("upgrade takes no arguments; name the group with --group")
	}
	if c.group == "" {
		return usagef("upgrade: missing --group G")
	}
	if !c.now {
		return usagef("upgrade: missing --now; connectors are upgraded in their group's window on their own, --now starts the rollout outside it (see 'outpost groups show %s')", c.group)
	}
	cl, err := c.client(s)
	if err != nil {
		return err
	}
	g, err := cl.UpgradeNow(ctx, c.group)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(s.Out, g)
	}
	printRollout(s.Out, g)
	return nil
}
