package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/zlayer/overlayd/cmd/internal/replay"
	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/journal"
)

func newJournalCompactCmd(a *app) *cobra.Command {
	var before string
	var offline bool
	c := &cobra.Command{
		Use:   "compact --before SEQ|TIME",
		Short: "Seal the older events into an archive file and replace them in the journal by a checkpoint",
		Long: `compact seals every event before --before (a sequence number: the events
before it; an RFC 3339 time: the events committed before it) into an archive
file, <data-dir>/overlayd/archive/<journal-id>-<first>-<last>.ovla, which
verifies on its own, and replaces them in the journal by a checkpoint: the
state after the last archived event and that event's hash. The journal file
is rewritten and shrinks; sequence numbers do not restart.

With the daemon stopped it works on the journal file (offline); while the
daemon holds the journal it asks the daemon (journal_compact), which goes
on serving: commands wait only while the file is swapped. --offline refuses
instead of asking the daemon.

Afterwards "journal verify" proves the chain from the checkpoint on, and
"journal verify --archives <data-dir>/overlayd/archive" from the first event.`,
		Example: `  overlayctl journal compact --before 900001
  overlayctl journal compact --before 2026-11-01T00:00:00Z`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error { return a.journalCompact(c.Context(), before, offline) },
	}
	c.Flags().StringVar(&before, "before", "", "archive the events before this sequence number or RFC 3339 time (required)")
	c.Flags().BoolVar(&offline, "offline", false, "work on the journal file only: refuse while a daemon holds it")
	return c
}

// compactReport is what compact prints (-o json: with its source).
type compactReport struct {
	Source string `json:"source"`
	ipc.JournalCompacted
}

func (a *app) journalCompact(ctx context.Context, before string, offline bool) error {
	if before == "" {
		return usageErrorf("journal compact: --before SEQ|TIME is required")
	}
	var opt replay.CompactOptions
	if n, err := strconv.ParseUint(before, 10, 64); err == nil {
		if n == 0 {
			return usageErrorf("journal compact: --before 0: there is no event before it")
		}
		opt.BeforeSeq = n
	} else if t, err := time.Parse(time.RFC3339Nano, before); err == nil {
		opt.BeforeTime = t
	} else {
		return usageErrorf("journal compact: --before %q is neither a sequence number nor an RFC 3339 time", before)
	}
	var rep compactReport
	dir := a.journalDir()
	res, err := replay.CompactDir(dir, opt)
	switch {
	case err == nil:
		rep = compactReport{Source: fmt.Sprintf("journal file %s (offline)", filepath.Join(dir, journal.FileName)), JournalCompacted: replay.CompactedOf(res)}
	case errors.Is(err, journal.ErrLocked) && !offline:
		c, derr := a.client(ctx)
		if derr != nil {
			return unreachable(fmt.Errorf("the journal is held by a running daemon, and %w", errors.Unwrap(derr)))
		}
		defer c.Close()
		req := ipc.JournalCompact{}
		if opt.BeforeSeq != 0 {
			req.BeforeSeq = &opt.BeforeSeq
		} else {
			s := opt.BeforeTime.Format(time.RFC3339Nano)
			req.BeforeTime = &s
		}
		r, err := c.Call(ctx, req)
		if err != nil {
			return fmt.Errorf("journal_compact: %w", err)
		}
		done, ok := r.(ipc.JournalCompacted)
		if !ok {
			return fmt.Errorf("journal_compact: the daemon answered %s", r.Result())
		}
		rep = compactReport{Source: fmt.Sprintf("live daemon (socket %s)", a.socketPath()), JournalCompacted: done}
	case errors.Is(err, journal.ErrLocked):
		return fmt.Errorf("journal compact --offline: %w", err)
	default:
		return fmt.Errorf("journal compact: %w", err)
	}
	p := a.printer()
	if !p.Table() {
		return p.Object(rep)
	}
	w := a.out
	fmt.Fprintf(w, "source:      %s\n", rep.Source)
	fmt.Fprintf(w, "archive:     %s\n", rep.Archive)
	fmt.Fprintf(w, "archived:    events %d..%d (%d events, %s)\n", rep.FirstSeq, rep.CheckpointSeq, rep.Events, mib(rep.ArchiveBytes))
	fmt.Fprintf(w, "checkpoint:  at %d; the journal holds %d..%d\n", rep.CheckpointSeq, rep.CheckpointSeq+1, rep.HeadSeq)
	fmt.Fprintf(w, "journal:     %s -> %s\n", mib(rep.BytesBefore), mib(rep.BytesAfter))
	fmt.Fprintf(w, "took:        %.0f ms (commands waited %.0f ms)\n", rep.TookMS, rep.HeldMS)
	return nil
}

func mib(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
