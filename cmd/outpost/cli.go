package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/outpost-appliance/outpost/cpapi"
	"github.com/spf13/pflag"
)

// version is set at link time with -ldflags "-X main.version=…".
var version = "dev"

// Exit codes shared by every command.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// streams are the process's standard streams, passed to every command so
// tests run commands in-process.
type streams struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

// command is one subcommand: it registers its flags, then runs with the
// remaining positional arguments.
type command interface {
	Register(fs *pflag.FlagSet)
	Run(ctx context.Context, s streams, args []string) error
}

// entry describes a command for dispatch and help.
type entry struct {
	Path     string // "key check"
	Args     string // "[FILE|-]"
	Summary  string
	Long     string
	Examples string
	New      func() command
}

// usageError marks an error caused by how the command was invoked (exit 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// exitError carries a specific exit code; a nil err means the command
// already printed what the user needs.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e exitError) Unwrap() error { return e.err }

// silentExit ends the command with code after it has printed its result.
func silentExit(code int) error { return exitError{code: code} }

func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	// Errors may quote a server's answer or a user's input: never let them
	// drive the terminal.
	var ee exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(stderr, "outpost: %s\n", safeLines(ee.err.Error()))
		}
		return ee.code
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "outpost: %s\n", safeLines(ue.msg))
		return exitUsage
	}
	msg := safeLines(err.Error())
	if errors.As(err, new(*cpapi.Error)) { // a server's sentence: one line
		msg = safe(err.Error())
	}
	fmt.Fprintf(stderr, "outpost: %s\n", msg)
	return exitFailure
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	s := streams{In: stdin, Out: stdout, Err: stderr}
	cmds := commands()
	if len(args) == 0 {
		printOverview(stderr, cmds)
		return usagef("missing command; run 'outpost help'")
	}
	switch args[0] {
	case "help", "-h", "--help":
		return helpCommand(s, cmds, args[1:])
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "outpost %s\n", version)
		return nil
	}
	e, rest := lookup(cmds, args)
	if e == nil {
		prefix := strings.Join(groupWords(cmds, args), " ")
		if prefix != "" {
			if len(args) > len(strings.Fields(prefix)) && !strings.HasPrefix(args[len(strings.Fields(prefix))], "-") {
				printGroup(stderr, cmds, prefix)
				return usagef("unknown command %q; run 'outpost help %s'", strings.Join(args[:len(strings.Fields(prefix))+1], " "), prefix)
			}
			if wantsHelp(args) {
				printGroup(stdout, cmds, prefix)
				return nil
			}
			printGroup(stderr, cmds, prefix)
			return usagef("missing subcommand of %q", prefix)
		}
		return usagef("unknown command %q; run 'outpost help'", args[0])
	}
	c := e.New()
	fs := pflag.NewFlagSet("outpost "+e.Path, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	c.Register(fs)
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			printCommandHelp(stdout, e, fs)
			return nil
		}
		return usagef("%s: %v; run 'outpost %s --help'", e.Path, err, e.Path)
	}
	return c.Run(ctx, s, fs.Args())
}

func wantsHelp(args []string) bool {
	for _, a := range args {
		if a == "-h" || a == "--help" {
			return true
		}
	}
	return false
}

// lookup finds the longest command path that prefixes args.
func lookup(cmds []entry, args []string) (*entry, []string) {
	var best *entry
	bestLen := 0
	for i := range cmds {
		words := strings.Fields(cmds[i].Path)
		if len(words) > len(args) || len(words) <= bestLen {
			continue
		}
		match := true
		for j, w := range words {
			if args[j] != w {
				match = false
				break
			}
		}
		if match {
			best, bestLen = &cmds[i], len(words)
		}
	}
	if best == nil {
		return nil, nil
	}
	return best, args[bestLen:]
}

// groupWords returns the leading words of args that name a command group
// ("keys" for "keys bogus").
func groupWords(cmds []entry, args []string) []string {
	var best []string
	for _, e := range cmds {
		words := strings.Fields(e.Path)
		for n := len(words) - 1; n >= 1; n-- {
			if n > len(args) || n <= len(best) {
				continue
			}
			if strings.Join(words[:n], " ") == strings.Join(args[:n], " ") {
				best = words[:n]
			}
		}
	}
	return best
}

func helpCommand(s streams, cmds []entry, args []string) error {
	if len(args) == 0 {
		printOverview(s.Out, cmds)
		return nil
	}
	if e, rest := lookup(cmds, args); e != nil && len(rest) == 0 {
		fs := pflag.NewFlagSet("outpost "+e.Path, pflag.ContinueOnError)
		fs.SortFlags = false
		e.New().Register(fs)
		printCommandHelp(s.Out, e, fs)
		return nil
	}
	if g := groupWords(cmds, args); len(g) == len(args) {
		printGroup(s.Out, cmds, strings.Join(g, " "))
		return nil
	}
	return usagef("no help for %q: unknown command; run 'outpost help'", strings.Join(args, " "))
}

func printOverview(w io.Writer, cmds []entry) {
	fmt.Fprintf(w, "outpost builds connector appliances and makes them configure and enroll themselves.\n\n")
	fmt.Fprintf(w, "Usage:\n  outpost COMMAND [flags] [args]\n\nCommands:\n")
	printTable(w, cmds, "")
	fmt.Fprintf(w, "\nRun 'outpost COMMAND --help' for a command's flags and examples.\n")
	fmt.Fprintf(w, "Global: --version prints the version. Exit codes: 0 success, 1 failure, 2 usage error.\n")
}

func printGroup(w io.Writer, cmds []entry, prefix string) {
	fmt.Fprintf(w, "Usage:\n  outpost %s COMMAND [flags] [args]\n\nCommands:\n", prefix)
	printTable(w, cmds, prefix+" ")
}

func printTable(w io.Writer, cmds []entry, prefix string) {
	sorted := append([]entry(nil), cmds...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	width := 0
	for _, e := range sorted {
		if strings.HasPrefix(e.Path, prefix) && len(e.Path) > width {
			width = len(e.Path)
		}
	}
	for _, e := range sorted {
		if strings.HasPrefix(e.Path, prefix) {
			fmt.Fprintf(w, "  %-*s  %s\n", width, e.Path, e.Summary)
		}
	}
}

func printCommandHelp(w io.Writer, e *entry, fs *pflag.FlagSet) {
	fmt.Fprintf(w, "%s\n\nUsage:\n  outpost %s [flags] %s\n", e.Summary, e.Path, e.Args)
	if e.Long != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(e.Long))
	}
	if fs.HasFlags() {
		fmt.Fprintf(w, "\nFlags:\n%s", fs.FlagUsages())
	}
	if e.Examples != "" {
		fmt.Fprintf(w, "\nExamples:\n")
		for _, l := range strings.Split(strings.TrimSpace(e.Examples), "\n") {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
}

// envDefault returns the environment variable's value or def, for flags
// whose defaults come from the environment (shown in help).
func envDefault(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}
