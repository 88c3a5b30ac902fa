// Command overlayctl inspects and audits an overlayd node: its journal, its
// projected state and, while the daemon runs, its live status. With the
// daemon stopped it opens the journal read-only; while the daemon holds the
// journal it asks the daemon over the socket (extension ops journal_list,
// journal_verify, state_dump, …). Every output says which of the two it
// came from.
//
//	overlayctl --data-dir D journal ls [-o json] [--after N] [--limit N]
//	overlayctl --data-dir D journal verify
//	overlayctl --data-dir D state -o json
//	overlayctl --data-dir D call '{"op":"status"}'
//	overlayctl completion bash|zsh|fish
//
// docs/overlayctl.md documents every command. Exit codes: 0 success; 1 a
// check found a problem (journal verify); 2 a usage error; 3 the daemon is
// unreachable (a command that needs it, or the journal is locked and the
// socket does not answer); 4 any other failure. A damaged, empty or
// truncated journal file gives an error naming the file and the page or
// event at fault, never a panic.
package main

import (
	"io"
	"log/slog"
	"os"
)

func main() {
	// The journal's own log lines (a compaction done, an index being
	// built) would repeat what the commands report: only warnings show.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes overlayctl with args and returns its exit code.
func run(args []string, stdout, stderr io.Writer) int {
	a := &app{out: stdout, errOut: stderr}
	root := newRootCmd(a)
	root.SetArgs(args)
	return a.execute(root)
}
