package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/zlayer/overlayd/cmd/internal/version"
	"github.com/zlayer/overlayd/ipc"
)

// topCommands are overlayctl's commands (help lists them sorted by name).
// A command group lives in a file of its own and is registered here by
// its constructor, func newXxxCmd(a *app) *cobra.Command.
var topCommands = []func(*app) *cobra.Command{
	newJournalCmd,
	newStatusCmd,
	newPeersCmd,
	newIPAMCmd,
	newServicesCmd,
	newAttachmentsCmd,
	newDNSCmd,
	newHistoryCmd,
	newStateCmd,
	newDiffCmd,
	newCallCmd,
	newBackupCmd,  // LIVE (backup.go)
	newRestoreCmd, // LIVE (restore.go)
}

// journalCommands are the subcommands of "overlayctl journal".
var journalCommands = []func(*app) *cobra.Command{
	newJournalLsCmd,
	newJournalShowCmd,
	newJournalVerifyCmd,
	newJournalStatsCmd,
	newJournalExportCmd,
	newJournalRepairCmd,
	newJournalFollowCmd,  // LIVE (follow.go)
	newJournalCompactCmd, // compact.go (CMP)
}

// Exit codes (documented in overlayctl --help and docs/overlayctl.md).
const (
	exitOK          = 0
	exitProblem     = 1 // a check found a problem (journal verify)
	exitUsage       = 2 // bad flags, arguments or command
	exitUnreachable = 3 // the daemon does not answer
	exitFailure     = 4 // anything else
)

const exitCodesHelp = `Exit codes:
  0  success
  1  a check found a problem (journal verify)
  2  usage error (unknown command or flag, bad argument)
  3  daemon unreachable (the command needs the daemon, or the journal is
     held by a daemon whose socket does not answer)
  4  any other failure (unreadable journal, error from the daemon, …)
`

// exitError carries an exit code; a nil err prints nothing (the command
// already said everything, as verify does when it finds problems).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageErrorf is a usage error (exit 2).
func usageErrorf(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// unreachable marks err as "the daemon does not answer" (exit 3).
func unreachable(err error) error {
	return &exitError{code: exitUnreachable, err: err}
}

// problemsFound is a check that found problems it has already printed
// (exit 1).
var problemsFound = &exitError{code: exitProblem}

// app holds the global flags and where output goes; every command reads
// them through it (a.printer, a.store, a.client, a.source).
type app struct {
	dataDir string
	socket  string // as given; "" means the endpoint file or the default
	output  string // table, json or jsonl
	scan    bool   // --scan: queries read every event, not the index
	out     io.Writer
	errOut  io.Writer
}

func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "overlayctl",
		Short: "Inspect and audit an overlayd node: its journal, its state, its live status",
		Long: `overlayctl inspects and audits an overlayd node.

With the daemon stopped it opens the journal (<data-dir>/overlayd/journal.db)
read-only; while the daemon holds the journal it asks the daemon over its
socket. Every output says which of the two it came from. The socket is
--socket, else the one the daemon recorded in <data-dir>/overlayd/endpoint.json,
else the default derived from --data-dir.

` + exitCodesHelp,
		Example: `  overlayctl --data-dir /tmp/overlayd journal ls --limit 20
  overlayctl journal verify
  overlayctl state -o json
  overlayctl call '{"op":"status"}'
  source <(overlayctl completion bash)`,
		Version:       version.String(),
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          unknownSubcommand,
		RunE:          groupRun,
	}
	root.SetOut(a.out)
	root.SetErr(a.errOut)
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &exitError{code: exitUsage, err: fmt.Errorf("%s: %w", c.CommandPath(), err)}
	})
	pf := root.PersistentFlags()
	pf.StringVar(&a.dataDir, "data-dir", ipc.DefaultDataDir, "the daemon's data directory (the journal is <data-dir>/overlayd/journal.db)")
	pf.StringVar(&a.socket, "socket", "", "the daemon's socket (default: from <data-dir>/overlayd/endpoint.json, else derived from --data-dir)")
	pf.StringVarP(&a.output, "output", "o", "table", "output format: table, json or jsonl")
	pf.BoolVar(&a.scan, "scan", false, "answer queries by reading every event instead of the journal's index (offline only: to cross-check the index, or to compare times)")
	root.PersistentPreRunE = func(c *cobra.Command, _ []string) error {
		switch a.output {
		case "table", "json", "jsonl":
		case "text": // the name before 0.13
			a.output = "table"
		default:
			return usageErrorf("-o %q: want table, json or jsonl", a.output)
		}
		return nil
	}
	for _, f := range topCommands {
		root.AddCommand(f(a))
	}
	return root
}

// group is a command that only holds subcommands: run bare it prints its
// help and is a usage error; with an unknown subcommand it says so.
func group(use, short string, subs []func(*app) *cobra.Command, a *app) *cobra.Command {
	c := &cobra.Command{Use: use, Short: short, Args: unknownSubcommand, RunE: groupRun}
	for _, f := range subs {
		c.AddCommand(f(a))
	}
	return c
}

func groupRun(c *cobra.Command, _ []string) error {
	c.SetOut(c.ErrOrStderr())
	_ = c.Usage()
	return &exitError{code: exitUsage, err: fmt.Errorf("%s: a command is needed", c.CommandPath())}
}

// unknownSubcommand is the Args check of a group: any argument is a
// command it does not have.
func unknownSubcommand(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], c.CommandPath())
	if c.SuggestionsMinimumDistance <= 0 {
		c.SuggestionsMinimumDistance = 2
	}
	if s := c.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return usageErrorf("%s", msg)
}

// exactArgs is cobra.ExactArgs with a usage error.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != n {
			return usageErrorf("%s: want %s, got %d argument(s)", c.CommandPath(), what, len(args))
		}
		return nil
	}
}

// noArgs is cobra.NoArgs with a usage error.
func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf("%s: unexpected argument %q", c.CommandPath(), args[0])
	}
	return nil
}

// execute runs root and maps its error to an exit code.
func (a *app) execute(root *cobra.Command) int {
	c, err := root.ExecuteC()
	if err == nil {
		return exitOK
	}
	code := exitFailure
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
		if ee.err == nil {
			return code
		}
	} else if strings.HasPrefix(err.Error(), "unknown command") || strings.HasPrefix(err.Error(), "unknown flag") {
		code = exitUsage // cobra's own, should a check above miss one
	}
	fmt.Fprintf(a.errOut, "overlayctl: %v\n", err)
	if code == exitUsage {
		path := "overlayctl"
		if c != nil {
			path = c.CommandPath()
		}
		fmt.Fprintf(a.errOut, "Run '%s --help' for usage.\n", path)
	}
	return code
}
