package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/pflag"
)

var completionEntry = entry{
	Path: "completion", Args: "bash|zsh|fish",
	Summary: "Print a shell completion script for outpost's commands and flags",
	Long:    "The script completes command words and each command's flags; arguments complete as file names.",
	Examples: "source <(outpost completion bash)            # or: outpost completion bash > /etc/bash_completion.d/outpost\n" +
		"source <(outpost completion zsh)\n" +
		"outpost completion fish > ~/.config/fish/completions/outpost.fish",
	New: func() command { return &completionCmd{} },
}

type completionCmd struct{}

func (c *completionCmd) Register(fs *pflag.FlagSet) {}

func (c *completionCmd) Run(ctx context.Context, s streams, args []string) error {
	if len(args) != 1 {
		return usagef("completion takes one shell: bash, zsh or fish")
	}
	tree := completionTree(commands())
	switch args[0] {
	case "bash":
		writeBash(s.Out, tree)
	case "zsh":
		// zsh runs the bash function through bashcompinit: one
		// implementation of the matching for both shells.
		fmt.Fprint(s.Out, "#compdef outpost\n# outpost completion for zsh: source <(outpost completion zsh)\nautoload -U +X compinit && compinit\nautoload -U +X bashcompinit && bashcompinit\n")
		writeBash(s.Out, tree)
	case "fish":
		writeFish(s.Out, tree)
	default:
		return usagef("completion: unknown shell %q; use bash, zsh or fish", args[0])
	}
	return nil
}

// node is a command word: its subcommands, or (for a command) its flags.
type node struct {
	summary string
	subs    map[string]*node
	flags   []*pflag.Flag
}

// builtins are run's own words, outside the command table.
var builtins = map[string]string{"help": "Show help for a command", "version": "Print outpost's version"}

func completionTree(cmds []entry) *node {
	root := &node{subs: map[string]*node{}}
	for w, sum := range builtins {
		root.subs[w] = &node{summary: sum, subs: map[string]*node{}}
	}
	for _, e := range cmds {
		n := root
		for _, w := range strings.Fields(e.Path) {
			if n.subs[w] == nil {
				n.subs[w] = &node{subs: map[string]*node{}}
			}
			n = n.subs[w]
		}
		n.summary = e.Summary
		fs := pflag.NewFlagSet(e.Path, pflag.ContinueOnError)
		e.New().Register(fs)
		fs.VisitAll(func(f *pflag.Flag) { n.flags = append(n.flags, f) })
	}
	return root
}

func sortedWords(n *node) []string {
	var ws []string
	for w := range n.subs {
		ws = append(ws, w)
	}
	sort.Strings(ws)
	return ws
}

// walk visits every node below n with its path of words.
func walk(n *node, path []string, f func(path []string, n *node)) {
	f(path, n)
	for _, w := range sortedWords(n) {
		walk(n.subs[w], append(append([]string(nil), path...), w), f)
	}
}

func flagWords(n *node) string {
	var ws []string
	for _, f := range n.flags {
		ws = append(ws, "--"+f.Name)
		if f.Shorthand != "" {
			ws = append(ws, "-"+f.Shorthand)
		}
	}
	return strings.Join(append(ws, "--help"), " ")
}

func writeBash(w io.Writer, root *node) {
	fmt.Fprint(w, `# outpost completion for bash: source <(outpost completion bash)
_outpost() {
    local cur="${COMP_WORDS[COMP_CWORD]}" path="" i word
    # The command path is the words before the cursor that are not flags
    # (words after a complete command are its arguments and flag values).
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${COMP_WORDS[i]}"
        case "$word" in -*) continue ;; esac
        path="${path:+$path }$word"
    done
    case "$path" in
`)
	walk(root, nil, func(path []string, n *node) {
		p := strings.Join(path, " ")
		if len(n.subs) > 0 {
			fmt.Fprintf(w, "    %q) COMPREPLY=($(compgen -W %q -- \"$cur\")) ;;\n", p, strings.Join(sortedWords(n), " "))
			return
		}
		if len(path) == 0 {
			return
		}
		fmt.Fprintf(w, "    %q | %q*)\n        case \"$cur\" in -*) COMPREPLY=($(compgen -W %q -- \"$cur\")) ;; *) COMPREPLY=() ;; esac ;;\n", p, p+" ", flagWords(n))
	})
	fmt.Fprint(w, `    *) COMPREPLY=() ;;
    esac
}
complete -o default -F _outpost outpost
`)
}

func writeFish(w io.Writer, root *node) {
	fmt.Fprint(w, "# outpost completion for fish: outpost completion fish > ~/.config/fish/completions/outpost.fish\ncomplete -c outpost -f\n")
	quote := func(s string) string {
		return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", `\'`) + "'"
	}
	walk(root, nil, func(path []string, n *node) {
		// The condition: every word of path seen, and (for subcommands) none
		// of the next words yet.
		var cond []string
		if len(path) == 0 {
			cond = append(cond, "__fish_use_subcommand")
		}
		for _, p := range path {
			cond = append(cond, "__fish_seen_subcommand_from "+p)
		}
		if len(n.subs) > 0 {
			c := append(append([]string(nil), cond...), "not __fish_seen_subcommand_from "+strings.Join(sortedWords(n), " "))
			if len(path) == 0 {
				c = cond
			}
			for _, sw := range sortedWords(n) {
				fmt.Fprintf(w, "complete -c outpost -n %s -a %s -d %s\n", quote(strings.Join(c, "; and ")), sw, quote(n.subs[sw].summary))
			}
			return
		}
		for _, f := range n.flags {
			short := ""
			if f.Shorthand != "" {
				short = " -s " + f.Shorthand
			}
			takes := " -r -F"
			if f.Value.Type() == "bool" {
				takes = ""
			}
			fmt.Fprintf(w, "complete -c outpost -n %s -l %s%s%s -d %s\n", quote(strings.Join(cond, "; and ")), f.Name, short, takes, quote(f.Usage))
		}
	})
}
