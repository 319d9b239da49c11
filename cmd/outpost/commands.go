package main

// commands lists every subcommand. Keep it sorted by path; each command
// lives in its own cmd_*.go file.
func commands() []entry {
	return []entry{
		imageBuildEntry,
		imagePackEntry,
		keyCheckEntry,
	}
}
