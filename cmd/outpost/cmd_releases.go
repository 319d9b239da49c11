package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

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
	if err := os.Chmod(path, 0o600); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path+".pub", pub, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(s.Err, "release key written to %s (mode 0600), its public key to %s.pub\n", path, path)
	return nil
}
