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

// health summarises a connector for the table: its state, or "stale" when
// it has not reported for 5 minutes, or "never seen".
func health(c cpapi.Connector, now time.Time) string {
	switch {
	case c.State != cpapi.ConnectorActive:
		return c.State
	case c.LastSeen.IsZero():
		return "never seen"
	case now.Sub(c.LastSeen) > 5*time.Minute:
		return "stale"
	}
	return "healthy"
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
	now := time.Now()
	tw := tabwriter.NewWriter(s.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tGROUP\tKEY\tFINGERPRINT\tENROLLED\tCERT EXPIRES\tLAST SEEN\tHEALTH")
	for _, x := range cs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", safe(x.Name), safe(x.Group), safe(x.KeyName), safe(x.Fingerprint), seen(x.EnrolledAt), x.CertExpires.UTC().Format("2006-01-02"), seen(x.LastSeen), safe(health(x, now)))
	}
	return tw.Flush()
}

func printConnector(w io.Writer, x cpapi.Connector) {
	fmt.Fprintf(w, "Name:         %s\nGroup:        %s\nKey:          %s (%s)\nFingerprint:  %s\nEnrolled:     %s\nCertificate:  serial %s, expires %s, signed by %s\nLast seen:    %s\nVersion:      %s\nUptime:       %s\nHealth:       %s\n",
		safe(x.Name), safe(x.Group), safe(x.KeyName), safe(x.KeyID), safe(x.Fingerprint), seen(x.EnrolledAt), safe(x.Serial), seen(x.CertExpires), safe(x.SigningCA), seen(x.LastSeen), safe(x.Version), time.Duration(x.Uptime)*time.Second, safe(health(x, time.Now())))
	if x.StateReason != "" {
		fmt.Fprintf(w, "Reason:       %s\n", safe(x.StateReason))
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
	printConnector(s.Out, x)
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
