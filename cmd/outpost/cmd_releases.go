package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/pflag"

	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/outpost-appliance/outpost/internal/atomicfile"
	"github.com/outpost-appliance/outpost/release"
)

var releasesKeygenEntry = entry{
	Path:    "releases keygen",
	Summary: "Make an Ed25519 release key that signs update bundles",
	Long: `Writes a new release key to FILE (PEM PKCS#8, mode 0600) and its public key to
FILE.pub (PEM, mode 0644). Give FILE to 'outpost image build --release-key';
configure the control plane with FILE.pub so that it trusts the bundles the key
signs. An existing FILE or FILE.pub is never overwritten.`,
	Examples: `outpost releases keygen -o release.key`,
	New:      func() command { return &releasesKeygenCmd{} },
}

type releasesKeygenCmd struct {
	out string
}

func (c *releasesKeygenCmd) Register(fs *pflag.FlagSet) {
	fs.StringVarP(&c.out, "output", "o", "", "file to write the private key to, mode 0600 (required); the public key goes to FILE.pub")
}

func (c *releasesKeygenCmd) Run(ctx context.Context, s streams, args []string) error {
	if len(args) > 0 {
		return usagef("releases keygen: unexpected argument %q; the file is given with -o", args[0])
	}
	if c.out == "" {
		return usagef("releases keygen: missing -o FILE")
	}
	path, err := filepath.Abs(c.out)
	if err != nil {
		return err
	}
	for _, p := range []string{path, path + ".pub"} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("releases keygen: %s exists; a release key is never overwritten: move it away or choose another -o", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("releases keygen: %w", err)
		}
	}
	priv, pub, err := release.GenerateKey()
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, priv, 0o600); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path+".pub", pub, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(s.Err, "release key written to %s (mode 0600), its public key to %s.pub\n", path, path)
	return nil
}

var releasesPublishEntry = entry{
	Path:    "releases publish",
	Args:    "FILE",
	Summary: "Publish a signed update bundle to the control plane",
	Long: `Streams FILE (NAME-VERSION.bundle from 'outpost image build --release-key') to
the control plane, which checks its signature against the keys it was started
with ('outpost server --release-key FILE.pub'), its manifest and its hashes, and
keeps it. Groups following the newest release (the default) then upgrade to it
in their windows, one connector at a time. Publishing the same bundle again is
harmless; another bundle with a published version is refused.`,
	Examples: `outpost releases publish out/outpost-connector-1.2.0.bundle
outpost releases publish out/outpost-connector-1.2.0.bundle --json`,
	New: func() command { return &releasesPublishCmd{} },
}

var releasesListEntry = entry{
	Path:     "releases list",
	Summary:  "List published releases, newest first",
	Examples: "outpost releases list\noutpost releases list --json",
	New:      func() command { return &releasesListCmd{} },
}

type releasesPublishCmd struct{ adminOpts }

func (c *releasesPublishCmd) Register(fs *pflag.FlagSet) { c.adminOpts.register(fs) }

func (c *releasesPublishCmd) Run(ctx context.Context, s streams, args []string) error {
	if len(args) != 1 {
		return usagef("releases publish takes exactly one FILE, the bundle (got %d arguments)", len(args))
	}
	if _, err := os.Stat(args[0]); err != nil {
		return fmt.Errorf("releases publish: %w", err)
	}
	cl, err := c.client(s)
	if err != nil {
		return err
	}
	r, err := cl.PublishReleaseFile(ctx, args[0])
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(s.Out, r)
	}
	printRelease(s.Out, r)
	return nil
}

func printRelease(w io.Writer, r cpapi.Release) {
	fmt.Fprintf(w, "Name:          %s\nVersion:       %s\nArchitecture:  %s\nSize:          %d bytes\nSHA-256:       %s\nImage size:    %d bytes\nPublished:     %s\n",
		safe(r.Name), safe(r.Version), safe(r.Architecture), r.Size, safe(r.SHA256), r.ImageSize, seen(r.PublishedAt))
}

type releasesListCmd struct{ adminOpts }

func (c *releasesListCmd) Register(fs *pflag.FlagSet) { c.adminOpts.register(fs) }

func (c *releasesListCmd) Run(ctx context.Context, s streams, args []string) error {
	if len(args) > 0 {
		return usagef("releases list takes no arguments")
	}
	cl, err := c.client(s)
	if err != nil {
		return err
	}
	rs, err := cl.Releases(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(s.Out, rs)
	}
	tw := tabwriter.NewWriter(s.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tNAME\tARCH\tSIZE\tPUBLISHED\tSHA-256")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", safe(r.Version), safe(r.Name), safe(r.Architecture), r.Size, r.PublishedAt.UTC().Format("2006-01-02 15:04 UTC"), safe(r.SHA256))
	}
	return tw.Flush()
}
