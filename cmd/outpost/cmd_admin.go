package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/outpost-appliance/outpost/console"
	"github.com/spf13/pflag"
)

var adminPasswdEntry = entry{
	Path:    "admin passwd",
	Summary: "Set the web console's password (the admin token always signs in too)",
	Long: `Reads the new password from standard input (one line; at least 12
characters, at most 72 bytes) and writes its bcrypt hash to DATA/` + console.PasswordFile + `
(mode 0600). A running server uses it from the next sign-in; no restart is
needed. Sessions already open stay open until they expire or sign out.`,
	Examples: `outpost admin passwd --data /var/lib/outpost
printf '%s\n' "$PASSWORD" | outpost admin passwd --data /var/lib/outpost`,
	New: func() command { return &adminPasswdCmd{} },
}

type adminPasswdCmd struct{ data string }

func (c *adminPasswdCmd) Register(fs *pflag.FlagSet) {
	fs.StringVar(&c.data, "data", envDefault("OUTPOST_DATA", ""), "the server's data directory (env OUTPOST_DATA)")
}

func (c *adminPasswdCmd) Run(ctx context.Context, s streams, args []string) error {
	if len(args) > 0 {
		return usagef("admin passwd takes no arguments; it reads the password from standard input")
	}
	if c.data == "" {
		return usagef("missing --data DIR: the server's data directory")
	}
	fmt.Fprintln(s.Err, "New console password (one line, then Enter):")
	line, err := bufio.NewReader(io.LimitReader(s.In, 1024)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read the password: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return usagef("no password on standard input")
	}
	path := filepath.Join(c.data, console.PasswordFile)
	if err := console.SetPassword(path, pw); err != nil {
		return err
	}
	fmt.Fprintf(s.Err, "console password set in %s\n", path)
	return nil
}
