package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/spf13/pflag"
)

// health shows the health the control plane derived, with how long ago an
// unreachable connector was last heard from.
func health(c cpapi.Connector, now time.Time) string {
	if c.Health == "" { // a control plane from before health
		return c.State
	}
	if c.Health == cpapi.HealthUnreachable && !c.LastSeen.IsZero() {
		return fmt.Sprintf("%s (last seen %s ago)", c.Health, ago(now.Sub(c.LastSeen)))
	}
	return c.Health
}

// ago rounds d to the unit a person reads: 45s, 2m, 3h, 4d.
func ago(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", max(0, int(d/time.Second)))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}

// skew shows a clock skew in seconds with its sign: +0.002s.
func skew(c cpapi.Connector) string {
	if c.LastSeen.IsZero() {
		return "-"
	}
	return fmt.Sprintf("%+.3fs", c.Skew)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func seen(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

type connectorsListCmd struct {
	adminOpts
	group string
}

func (c *connectorsListCmd) Register(fs *pflag.FlagSet) {
	fs.StringVar(&c.group, "group", "", "only connectors of this group")
	c.adminOpts.register(fs)
}

func (c *connectorsListCmd) Run(ctx context.Context, s streams, args []string) error {
	if len(args) > 0 {
		return usagef("connectors list takes no arguments")
	}
	cl, err := c.client(s)
	if err != nil {
		return err
	}
	cs, err := cl.Connectors(ctx, c.group)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(s.Out, cs)
	}
	return printConnectorTable(s.Out, cs, time.Now())
}

func printConnectorTable(w io.Writer, cs []cpapi.Connector, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tGROUP\tHEALTH\tLAST SEEN\tVERSION\tADDRESS\tSKEW\tCERT EXPIRES")
	for _, x := range cs {
		addr := ""
		if len(x.Addresses) > 0 {
			addr = x.Addresses[0]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", safe(x.Name), safe(x.Group), safe(health(x, now)), seen(x.LastSeen),
			safe(orDash(x.Version)), safe(orDash(addr)), skew(x), x.CertExpires.UTC().Format("2006-01-02"))
	}
	return tw.Flush()
}

func printConnector(w io.Writer, x cpapi.Connector, now time.Time) {
	fmt.Fprintf(w, "Name:         %s\nGroup:        %s\nKey:          %s (%s)\nFingerprint:  %s\nEnrolled:     %s\nCertificate:  serial %s, expires %s, signed by %s\nHealth:       %s\nLast seen:    %s\nVersion:      %s\nUptime:       %s\nAddresses:    %s\nClock skew:   %s\n",
		safe(x.Name), safe(x.Group), safe(x.KeyName), safe(x.KeyID), safe(x.Fingerprint), seen(x.EnrolledAt), safe(x.Serial), seen(x.CertExpires), safe(x.SigningCA),
		safe(health(x, now)), seen(x.LastSeen), safe(orDash(x.Version)), time.Duration(x.Uptime)*time.Second, safe(orDash(strings.Join(x.Addresses, ", "))), skew(x))
	if x.StateReason != "" {
		fmt.Fprintf(w, "Reason:       %s\n", safe(x.StateReason))
	}
	if x.UpgradeTarget != "" {
		fmt.Fprintf(w, "Upgrade:      ordered to install %s\n", safe(x.UpgradeTarget))
	}
	if x.UpgradeState != "" {
		line := "last reported " + safe(x.UpgradeState)
		if x.UpgradeReason != "" {
			line += ": " + safe(x.UpgradeReason)
		}
		fmt.Fprintf(w, "Upgrade note: %s\n", line)
	}
}

type connectorsShowCmd struct{ adminOpts }

func (c *connectorsShowCmd) Register(fs *pflag.FlagSet) { c.adminOpts.register(fs) }
func (c *connectorsShowCmd) Run(ctx context.Context, s streams, args []string) error {
	name, err := oneName("connectors show", args)
	if err != nil {
		return err
	}
	cl, err := c.client(s)
	if err != nil {
		return err
	}
	x, err := cl.Connector(ctx, name)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(s.Out, x)
	}
	printConnector(s.Out, x, time.Now())
	return nil
}

type connectorsRevokeCmd struct{ adminOpts }

func (c *connectorsRevokeCmd) Register(fs *pflag.FlagSet) { c.adminOpts.register(fs) }
func (c *connectorsRevokeCmd) Run(ctx context.Context, s streams, args []string) error {
	name, err := oneName("connectors revoke", args)
	if err != nil {
		return err
	}
	cl, err := c.client(s)
	if err != nil {
		return err
	}
	r, err := cl.RevokeConnector(ctx, name)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(s.Out, r)
	}
	fmt.Fprintf(s.Err, "connector %s revoked\n", name)
	if len(r.Regenerated) > 0 {
		fmt.Fprintf(s.Err, "regenerated the keys of group %s (old texts no longer work): %s\n", safe(r.Connector.Group), safe(strings.Join(r.Regenerated, ", ")))
	}
	return nil
}
