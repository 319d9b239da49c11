package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/internal/atomicfile"
	"github.com/spf13/pflag"
)

// keyState is the state the portal shows: revoked, expired, exhausted or active.
func keyState(k cpapi.KeyInfo) string {
	switch {
	case k.State == cpapi.KeyRevoked:
		return "revoked"
	case k.Expired:
		return "expired"
	case k.UseCount >= k.MaxUses:
		return "exhausted"
	}
	return "active"
}

func expiry(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

func printKeyDetail(w io.Writer, k cpapi.KeyInfo) {
	fmt.Fprintf(w, "Name:                %s\nID:                  %s\nGroup:               %s\nSigning certificate: %s\nMaximum uses:        %d\nUtilization count:   %d\nExpires:             %s\nState:               %s\nControl plane:       %s\nCA pin:              %s\nGeneration:          %d\nCreated:             %s\nKey:                 %s\n",
		safe(k.Name), safe(k.ID), safe(k.Group), safe(k.SigningCA), k.MaxUses, k.UseCount, expiry(k.ExpiresAt), keyState(k), safe(k.Host), safe(k.Pin), k.Generation, expiry(k.CreatedAt), safe(k.Redacted))
}

// printKeyText prints the key alone on stdout and its details on stderr,
// or everything as JSON.
func printKeyText(s streams, asJSON bool, kt cpapi.KeyText) error {
	if asJSON {
		return printJSON(s.Out, kt)
	}
	printKeyDetail(s.Err, kt.KeyInfo)
	fmt.Fprintln(s.Out, safe(kt.Text))
	return nil
}

type keysCreateCmd struct {
	adminOpts
	spec    cpapi.KeySpec
	expires string
}

func (c *keysCreateCmd) Register(fs *pflag.FlagSet) {
	fs.StringVar(&c.spec.Name, "name", "", "key name; connectors are named NAME-1, NAME-2, … (required)")
	fs.StringVar(&c.spec.Group, "group", "", "connector group the key enrolls into (required)")
	fs.Int64Var(&c.spec.MaxUses, "max-uses", 0, "how many connectors the key may enroll (required)")
	fs.StringVar(&c.expires, "expires-in", "14d", "lifetime: a duration such as 14d, 36h, 1d12h, or never")
	fs.StringVar(&c.spec.SigningCA, "signing-ca", "Connector", "signing CA for the connectors' certificates")
	c.adminOpts.register(fs)
}

func (c *keysCreateCmd) Run(ctx context.Context, s streams, args []string) error {
	if len(args) > 0 {
		return usagef("keys create takes flags only (got %q); did you mean --name %s?", args, args[0])
	}
	var missing []string
	if c.spec.Name == "" {
		missing = append(missing, "--name")
	}
	if c.spec.Group == "" {
		missing = append(missing, "--group")
	}
	if c.spec.MaxUses == 0 {
		missing = append(missing, "--max-uses")
	}
	if len(missing) > 0 {
		return usagef("keys create: missing %s", strings.Join(missing, ", "))
	}
	if _, _, err := cpapi.ParseExpiresIn(c.expires); err != nil {
		return usagef("--expires-in: %v", err)
	}
	c.spec.ExpiresIn = c.expires
	cl, err := c.client(s)
	if err != nil {
		return err
	}
	kt, err := cl.CreateKey(ctx, c.spec)
	if err != nil {
		return err
	}
	return printKeyText(s, c.json, kt)
}

type keysListCmd struct {
	adminOpts
	group, name, state string
}

func (c *keysListCmd) Register(fs *pflag.FlagSet) {
	fs.StringVar(&c.group, "group", "", "only keys of this group")
	fs.StringVar(&c.name, "name", "", "only the key with this name")
	fs.StringVar(&c.state, "state", "", "only keys in this state: active, exhausted, expired, revoked")
	c.adminOpts.register(fs)
}

func (c *keysListCmd) Run(ctx context.Context, s streams, args []string) error {
	if len(args) > 0 {
		return usagef("keys list takes no arguments; filter with --group, --name, --state")
	}
	switch c.state {
	case "", "active", "exhausted", "expired", "revoked":
	default:
		return usagef("--state %q: use active, exhausted, expired or revoked", c.state)
	}
	cl, err := c.client(s)
	if err != nil {
		return err
	}
	// The states exhausted and expired are derived here, so the filter
	// on state is too.
	all, err := cl.Keys(ctx, cpapi.KeyFilter{Group: c.group, Name: c.name})
	if err != nil {
		return err
	}
	keys := []cpapi.KeyInfo{}
	for _, k := range all {
		if c.state == "" || keyState(k) == c.state {
			keys = append(keys, k)
		}
	}
	if c.json {
		return printJSON(s.Out, keys)
	}
	return printKeyTable(s.Out, keys)
}

// printKeyTable renders keys as the admin portal's table.
func printKeyTable(w io.Writer, keys []cpapi.KeyInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSIGNING CERTIFICATE\tMAX USES\tUTILIZATION\tGROUP\tEXPIRES\tSTATE\tKEY")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", safe(k.Name), safe(k.SigningCA), k.MaxUses, k.UseCount, safe(k.Group), expiry(k.ExpiresAt), keyState(k), safe(k.Redacted))
	}
	return tw.Flush()
}

// keysNameCmd is a key command that takes one NAME: show, reveal,
// regenerate, revoke or delete.
type keysNameCmd struct {
	adminOpts
	verb  string
	force bool
}

func (c *keysNameCmd) Register(fs *pflag.FlagSet) {
	if c.verb == "delete" {
		fs.BoolVar(&c.force, "force", false, "delete even if the key enrolled connectors (they stay enrolled)")
	}
	c.adminOpts.register(fs)
}

func (c *keysNameCmd) Run(ctx context.Context, s streams, args []string) error {
	name, err := oneName("keys "+c.verb, args)
	if err != nil {
		return err
	}
	cl, err := c.client(s)
	if err != nil {
		return err
	}
	switch c.verb {
	case "reveal", "regenerate":
		get := cl.RevealKey
		if c.verb == "regenerate" {
			get = cl.RegenerateKey
		}
		kt, err := get(ctx, name)
		if err != nil {
			return exhaustedWarning(s, err)
		}
		if c.verb == "regenerate" {
			fmt.Fprintf(s.Err, "key %s regenerated: the old text no longer works; enrolled connectors are unaffected\n", name)
		}
		return printKeyText(s, c.json, kt)
	case "delete":
		out, err := cl.DeleteKey(ctx, name, c.force)
		if err != nil {
			return err
		}
		if c.json {
			return printJSON(s.Out, out)
		}
		fmt.Fprintf(s.Err, "key %s deleted; connectors it enrolled stay\n", name)
		return nil
	}
	get := cl.Key
	if c.verb == "revoke" {
		get = cl.RevokeKey
	}
	k, err := get(ctx, name)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(s.Out, k)
	}
	printKeyDetail(s.Out, k)
	return nil
}

// exhaustedWarning turns the refusal to reveal a used-up key into a
// warning and exit status 1; other errors pass unchanged.
func exhaustedWarning(s streams, err error) error {
	var e *cpapi.Error
	if errors.As(err, &e) && e.Code == cpapi.CodeKeyExhausted {
		fmt.Fprintf(s.Err, "warning: %s\n", safeLines(e.Message))
		return silentExit(exitFailure)
	}
	return err
}

type keysEditCmd struct {
	adminOpts
	maxUses int64
	fs      *pflag.FlagSet
}

func (c *keysEditCmd) Register(fs *pflag.FlagSet) {
	c.fs = fs
	fs.Int64Var(&c.maxUses, "max-uses", 0, "new maximum uses (not below the utilization count)")
	c.adminOpts.register(fs)
}

func (c *keysEditCmd) Run(ctx context.Context, s streams, args []string) error {
	name, err := oneName("keys edit", args)
	if err != nil {
		return err
	}
	if !c.fs.Changed("max-uses") {
		return usagef("keys edit: nothing to change; pass --max-uses N")
	}
	cl, err := c.client(s)
	if err != nil {
		return err
	}
	k, err := cl.SetMaxUses(ctx, name, c.maxUses)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(s.Out, k)
	}
	printKeyDetail(s.Out, k)
	return nil
}

type keysDownloadCmd struct {
	adminOpts
	out string
}

func (c *keysDownloadCmd) Register(fs *pflag.FlagSet) {
	fs.StringVarP(&c.out, "output", "o", "", "file to write the key to, mode 0600, or - for standard output (required)")
	c.adminOpts.register(fs)
}

func (c *keysDownloadCmd) Run(ctx context.Context, s streams, args []string) error {
	name, err := oneName("keys download", args)
	if err != nil {
		return err
	}
	if c.out == "" {
		return usagef("keys download: missing -o FILE")
	}
	cl, err := c.client(s)
	if err != nil {
		return err
	}
	kt, err := cl.RevealKey(ctx, name)
	if err != nil {
		return exhaustedWarning(s, err)
	}
	if c.out == "-" {
		if c.json {
			return printJSON(s.Out, kt)
		}
		fmt.Fprintln(s.Out, safe(kt.Text))
		return nil
	}
	path, _ := filepath.Abs(c.out)
	// The key alone, without a line break: what 'key check' finds clean.
	if err := atomicfile.WriteFile(path, []byte(kt.Text), 0o600); err != nil {
		return err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return err
	}
	if c.json {
		return printJSON(s.Out, map[string]string{"key": name, "file": path})
	}
	fmt.Fprintf(s.Err, "key %s written to %s (mode 0600)\n", name, path)
	return nil
}
