// Command overlayctl inspects and audits an overlayd node: its journal and
// its projected state. With the daemon stopped it opens the journal
// read-only; while the daemon holds the journal it asks the daemon over the
// socket (extension ops journal_list, journal_verify, state_dump).
//
//	overlayctl --data-dir D journal ls [-o json] [--after N] [--limit N]
//	overlayctl --data-dir D journal verify [-o json]
//	overlayctl --data-dir D journal repair [-o json] [--force]
//	overlayctl --data-dir D state [-o json]
//	overlayctl --data-dir D call '{"op":"status"}'
//
// Exit codes: 0 success; 1 a failure, or problems found (verify); 2 a
// usage error. A damaged, empty or truncated journal file gives an error
// naming the file and the page or event at fault, never a panic.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/journal"
)

const usage = `usage: overlayctl [--data-dir D] [--socket S] <command>

commands:
  journal ls [-o json] [--after N] [--limit N]   list journaled events (oldest first)
  journal verify [-o json]                       check the file's pages, the hash chain,
                                                 a full replay, the state's invariants
                                                 and the snapshot
  journal repair [-o json] [--force]             offline (daemon stopped): keep a copy of the
                                                 journal, salvage every event whose hash chain
                                                 verifies, rewrite it and report what was lost
  state [-o json]                                the projected state
  call '<request json>'                          send one request, e.g. '{"op":"status"}'

Offline (daemon stopped) the journal is opened read-only; while the daemon
runs, overlayctl asks it over the socket.
`

type app struct {
	dataDir, socket string
	out             io.Writer
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("overlayctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	a := &app{out: stdout}
	fs.StringVar(&a.dataDir, "data-dir", ipc.DefaultDataDir, "the daemon's data directory")
	fs.StringVar(&a.socket, "socket", "", "the daemon's socket (default derived from --data-dir)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if a.socket == "" {
		a.socket = ipc.DefaultSocketPath(a.dataDir)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return 2
	}
	var err error
	switch {
	case rest[0] == "journal" && len(rest) > 1 && rest[1] == "ls":
		err = a.journalLs(rest[2:])
	case rest[0] == "journal" && len(rest) > 1 && rest[1] == "verify":
		var ok bool
		ok, err = a.journalVerify(rest[2:])
		if err == nil && !ok {
			return 1
		}
	case rest[0] == "journal" && len(rest) > 1 && rest[1] == "repair":
		err = a.journalRepair(rest[2:])
	case rest[0] == "state":
		err = a.state(rest[1:])
	case rest[0] == "call":
		err = a.call(rest[1:])
	default:
		fmt.Fprintf(stderr, "overlayctl: unknown command %q\n\n", rest)
		fs.Usage()
		return 2
	}
	if errors.Is(err, errHelpShown) {
		return 0
	}
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "overlayctl: %v\n", err)
			return 2
		}
		fmt.Fprintf(stderr, "overlayctl: %v\n", err)
		return 1
	}
	return 0
}

type usageError struct{ error }

// source is where the data comes from: the journal file, or the daemon.
type source struct {
	store  *journal.BoltStore
	client *ipc.Client
}

func (s *source) Close() {
	if s.store != nil {
		s.store.Close()
	}
	if s.client != nil {
		s.client.Close()
	}
}

// open opens the journal read-only, or connects to the daemon if it holds
// the journal.
func (a *app) open() (*source, error) {
	dir := filepath.Join(a.dataDir, "overlayd")
	st, err := journal.Open(dir, journal.Options{ReadOnly: true, LockTimeout: 200 * time.Millisecond})
	if err == nil {
		return &source{store: st}, nil
	}
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no journal in %s (is --data-dir right?)", dir)
	}
	if !errors.Is(err, journal.ErrLocked) {
		return nil, err
	}
	c, derr := ipc.Dial(context.Background(), a.socket, ipc.DialOptions{Attempts: 3, CallTimeout: 5 * time.Minute})
	if derr != nil {
		return nil, fmt.Errorf("the journal is held by a running daemon, and its socket does not answer: %v", derr)
	}
	return &source{client: c}, nil
}

// errHelpShown: a subcommand's -h printed its flags (exit 0).
var errHelpShown = errors.New("help shown")

// outputFlag parses the -o flag of a subcommand.
func (a *app) outputFlag(name string, args []string, extra func(fs *flag.FlagSet)) (string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o := fs.String("o", "text", "output: text or json")
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(a.out, "usage: overlayctl %s [flags]\n", name)
			fs.SetOutput(a.out)
			fs.PrintDefaults()
			return "", errHelpShown
		}
		return "", usageError{fmt.Errorf("%s: %v", name, err)}
	}
	if fs.NArg() > 0 {
		return "", usageError{fmt.Errorf("%s: unexpected argument %q", name, fs.Arg(0))}
	}
	if *o != "text" && *o != "json" {
		return "", usageError{fmt.Errorf("%s: -o %q: want text or json", name, *o)}
	}
	return *o, nil
}
