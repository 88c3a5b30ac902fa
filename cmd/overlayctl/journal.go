package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

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

func newJournalLsCmd(a *app) *cobra.Command {
	var after, limit uint64
	c := &cobra.Command{
		Use:   "ls",
		Short: "List journaled events, oldest first",
		Example: `  overlayctl journal ls --limit 20
  overlayctl journal ls --after 1000 -o jsonl`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return a.journalLs(c.Context(), after, limit)
		},
	}
	c.Flags().Uint64Var(&after, "after", 0, "list events after this sequence number")
	c.Flags().Uint64Var(&limit, "limit", 0, "list at most this many events (0: all)")
	return c
}

func (a *app) journalLs(ctx context.Context, after, limit uint64) error {
	src, err := a.source(ctx)
	if err != nil {
		return err
	}
	defer src.Close()
	p := a.printer()
	var t *table
	if p.Table() {
		fmt.Fprintf(a.out, "source: %s\n", src)
		t = p.NewTable("SEQ", "TIME", "ID", "TYPE", "CAUSE", "PAYLOAD")
	}
	n := uint64(0)
	emit := func(e ipc.JournalEvent) error {
		n++
		if t == nil {
			return p.Item(e)
		}
		t.Row(fmt.Sprint(e.Seq), e.Time, e.ID, e.Type, causeOf(e), string(e.Payload))
		return nil
	}
	if err := listEvents(ctx, src, after, limit, emit); err != nil {
		return err
	}
	if t != nil {
		return t.Flush()
	}
	return p.End()
}

// causeOf is an event's cause in a table: the op, the request id and the
// caller.
func causeOf(e ipc.JournalEvent) string {
	who := e.Op
	if e.RequestID != 0 {
		who += fmt.Sprintf(" #%d", e.RequestID)
	}
	if e.PeerUID != nil {
		who += fmt.Sprintf(" uid=%d", *e.PeerUID)
	}
	if e.PeerPID != nil {
		who += fmt.Sprintf(" pid=%d", *e.PeerPID)
	}
	return who
}

var errStop = errors.New("stop")

// listEvents calls emit for the events after after (at most limit; 0:
// all), from the file or through the daemon (journal_list pages).
func listEvents(ctx context.Context, src *source, after, limit uint64, emit func(ipc.JournalEvent) error) error {
	n := uint64(0)
	if src.store != nil {
		err := src.store.Iterate(after, false, func(e *journal.Envelope) error {
			if limit > 0 && n >= limit {
				return errStop
			}
			n++
			return emit(replay.JournalEventOf(e))
		})
		if errors.Is(err, errStop) {
			return nil
		}
		return err
	}
	for {
		page := uint32(10000)
		if limit > 0 && limit-n < uint64(page) {
			page = uint32(limit - n)
		}
		if page == 0 {
			return nil
		}
		r, err := src.client.Call(ctx, ipc.JournalList{AfterSeq: after, Limit: &page})
		if err != nil {
			return fmt.Errorf("journal_list: %w", err)
		}
		evs := r.(ipc.JournalEvents).Events
		for _, e := range evs {
			if err := emit(e); err != nil {
				return err
			}
			n++
			after = e.Seq
		}
		if len(evs) == 0 || (limit > 0 && n >= limit) {
			return nil
		}
	}
}

func newJournalVerifyCmd(a *app) *cobra.Command {
	var archives string
	c := &cobra.Command{
		Use:   "verify",
		Short: "Check the file's pages, the hash chain, a full replay, the state's invariants and the snapshot",
		Long: `verify checks the journal: every event's hash and link, that it replays into a
state that keeps its invariants, that the snapshot equals a replay up to its
sequence and, online, that the daemon's live state equals a replay.
It exits 1 when it finds a problem (also a file too damaged to open), naming
the event or page at fault.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error { return a.journalVerify(c.Context(), archives) },
	}
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

func (a *app) journalVerify(ctx context.Context, archives string) error {
	src, err := a.source(ctx)
	if err != nil {
		return damaged(err)
	}
	defer src.Close()
	var rep replay.Report
	if src.store != nil {
		r, err := replay.Verify(src.store, nil, 0)
		if err != nil {
			return damaged(err)
		}
		if archives != "" {
			r.AddArchives(src.store, archives)
		}
		rep = *r
	} else {
		req := ipc.JournalVerify{}
		if archives != "" {
			abs, err := filepath.Abs(archives) // the daemon's working directory is not ours
			if err != nil {
				return err
			}
			req.Archives = &abs
		}
		r, err := src.client.Call(ctx, req)
		if err != nil {
			return fmt.Errorf("journal_verify: %w", err)
		}
		if err := json.Unmarshal(r.(ipc.JournalReport).Report, &rep); err != nil {
			return fmt.Errorf("journal_verify: the daemon's report: %w", err)
		}
	}
	p := a.printer()
	if !p.Table() {
		if err := p.Object(struct {
			Source string `json:"source"`
			*replay.Report
		}{src.String(), &rep}); err != nil {
			return err
		}
	} else {
		printReport(a, &rep, src)
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
