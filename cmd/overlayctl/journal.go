package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/zlayer/overlayd/cmd/internal/replay"
	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/journal"
)

func newJournalCmd(a *app) *cobra.Command {
	c := group("journal", "Read, check and maintain the journal", journalCommands, a)
	c.Long = `The journal is the node's history: every decision with its cause, hash-chained.
Offline (daemon stopped) it is read from <data-dir>/overlayd/journal.db; while
the daemon runs, through the daemon.`
	return c
}

func newJournalVerifyCmd(a *app) *cobra.Command {
	var mode, archives string
	c := &cobra.Command{
		Use:   "verify",
		Short: "Check the file's pages, the hash chain, a full replay, the state's invariants and the snapshot",
		Long: `verify checks the journal: every event's hash and link, that it replays into a
state that keeps its invariants, that the snapshot equals a replay up to its
sequence and, online, that the daemon's live state equals a replay.
On a terminal it shows its progress on stderr (none on a pipe); it ends with
the number of events, the seconds taken and the events per second.
It exits 1 when it finds a problem (also a file too damaged to open), naming
the event or page at fault.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			switch mode {
			case "auto", "always", "never":
			default:
				return usageErrorf("--progress %q: want auto, always or never", mode)
			}
			return a.journalVerify(c.Context(), mode, archives)
		},
	}
	c.Flags().StringVar(&mode, "progress", "auto", "progress bar on stderr: auto (on a terminal), always or never")
	// CMP: a compacted journal's archives (journal compact).
	c.Flags().StringVar(&archives, "archives", "", "also verify a compacted journal's archives in this directory (<data-dir>/overlayd/archive): the chain from the first event to the checkpoint, and that their replay equals the checkpoint's state")
	return c
}

// damaged is an error reading the journal file, for verify: a problem it
// found (exit 1) rather than a failure to check, unless the file is
// missing, held or not readable by this user.
func damaged(err error) error {
	var ee *exitError
	if errors.As(err, &ee) || errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) || errors.Is(err, journal.ErrLocked) {
		return err
	}
	return &exitError{code: exitProblem, err: err}
}

// progressStore counts the events a verify replays, for the progress bar.
// It embeds the store, so every method (and interface) of *BoltStore is
// still there; Iterate and Verify are wrapped.
type progressStore struct {
	*journal.BoltStore
	p *progress
}

func (s progressStore) Verify() (*journal.Report, error) {
	s.p.Phase("checking the hash chain", 0)
	return s.BoltStore.Verify()
}

func (s progressStore) Iterate(after uint64, verify bool, fn func(*journal.Envelope) error) error {
	head, _ := s.Head()
	s.p.Phase("replaying", head-min(after, head))
	return s.BoltStore.Iterate(after, verify, func(e *journal.Envelope) error {
		s.p.Add(1)
		return fn(e)
	})
}

// verifySpeed is the summary at the end of a verify.
type verifySpeed struct {
	Events       uint64  `json:"events"`
	Seconds      float64 `json:"seconds"`
	EventsPerSec float64 `json:"events_per_second"`
}

func (a *app) journalVerify(ctx context.Context, mode, archives string) error {
	src, err := a.source(ctx)
	if err != nil {
		return damaged(err)
	}
	defer src.Close()
	var rep replay.Report
	start := time.Now()
	bar := newProgress(a.errOut, mode)
	if src.store != nil {
		var store journal.Store = src.store
		if bar != nil {
			store = progressStore{src.store, bar}
		}
		r, err := replay.Verify(store, nil, 0)
		if err == nil && archives != "" {
			bar.Phase("verifying the archives", 0)
			r.AddArchives(store, archives)
		}
		bar.Done()
		if err != nil {
			return damaged(err)
		}
		rep = *r
	} else {
		bar.Phase("the daemon is verifying", 0)
		req := ipc.JournalVerify{}
		if archives != "" {
			abs, err := filepath.Abs(archives) // the daemon's working directory is not ours
			if err != nil {
				return err
			}
			req.Archives = &abs
		}
		r, err := src.client.Call(ctx, req)
		bar.Done()
		if err != nil {
			return fmt.Errorf("journal_verify: %w", err)
		}
		if err := json.Unmarshal(r.(ipc.JournalReport).Report, &rep); err != nil {
			return fmt.Errorf("journal_verify: the daemon's report: %w", err)
		}
	}
	sp := verifySpeed{Seconds: time.Since(start).Seconds()}
	if rep.Chain != nil {
		sp.Events = rep.Chain.Events
	}
	if sp.Seconds > 0 {
		sp.EventsPerSec = float64(sp.Events) / sp.Seconds
	}
	p := a.printer()
	if !p.Table() {
		if err := p.Object(struct {
			Source string `json:"source"`
			*replay.Report
			Speed verifySpeed `json:"speed"`
		}{src.String(), &rep, sp}); err != nil {
			return err
		}
	} else {
		printReport(a, &rep, src)
		fmt.Fprintf(a.out, "speed:      %d events in %.3f s (%.0f events/s)\n", sp.Events, sp.Seconds, sp.EventsPerSec)
	}
	if !rep.OK() {
		return problemsFound
	}
	return nil
}

func printReport(a *app, rep *replay.Report, src *source) {
	c := rep.Chain
	if c == nil {
		c = &journal.Report{}
	}
	fmt.Fprintf(a.out, "source:     %s\n", src)
	fmt.Fprintf(a.out, "events:     %d (sequence %d to %d)\n", c.Events, c.FirstSeq, c.LastSeq)
	fmt.Fprintf(a.out, "head hash:  %s\n", c.HeadHash)
	fmt.Fprintf(a.out, "replay:     %d events replayed\n", rep.Replayed)
	fmt.Fprintf(a.out, "snapshot:   %s\n", rep.Snapshot)
	if rep.Checkpoint != "" {
		fmt.Fprintf(a.out, "checkpoint: %s\n", rep.Checkpoint)
	}
	if ar := rep.Archives; ar != nil {
		for _, x := range ar.Archives {
			fmt.Fprintf(a.out, "archive:    %s: events %d..%d verify\n", x.Name, x.First, x.Last)
		}
		if ar.State != "" {
			fmt.Fprintf(a.out, "archives:   %d events from the first, %s\n", ar.Events, ar.State)
		}
	}
	if rep.Live != "" {
		fmt.Fprintf(a.out, "live state: %s\n", rep.Live)
	}
	if rep.OK() {
		fmt.Fprintln(a.out, "result:     OK: every event's hash and link check out, and the journal replays into a consistent state")
		return
	}
	fmt.Fprintf(a.out, "result:     FAILED, %d problem(s):\n", len(rep.Problems))
	for _, p := range rep.Problems {
		fmt.Fprintf(a.out, "  - %s\n", strings.TrimSpace(p))
	}
}
