package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/zlayer/overlayd/cmd/internal/audit"
	"github.com/zlayer/overlayd/ipc"
)

func newJournalExportCmd(a *app) *cobra.Command {
	var after uint64
	c := &cobra.Command{
		Use:   "export",
		Short: "Write every event as JSON Lines (one event a line, every field), for archiving or other tools",
		Long: `export writes the journal's events to stdout as JSON Lines, whatever -o says:
one object a line with every field of an event (seq, id, time, type, version,
op, request_id, peer_uid, peer_pid, exe, payload, hash, prev_hash), oldest
first. Events hold no private keys (the daemon keeps them out of the
journal), so neither does the export. A summary (events, sequence range,
source) goes to stderr. --after N continues an earlier export.`,
		Example: `  overlayctl journal export > journal-$(date +%F).jsonl
  overlayctl journal export --after 120000 >> journal.jsonl`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error { return a.journalExport(c.Context(), after) },
	}
	c.Flags().Uint64Var(&after, "after", 0, "only events after this sequence number")
	return c
}

func (a *app) journalExport(ctx context.Context, after uint64) error {
	q, src, err := a.querier(ctx)
	if err != nil {
		return err
	}
	defer src.Close()
	w := bufio.NewWriterSize(a.out, 1<<16)
	var n, first, last uint64
	err = q.List(ctx, audit.Filter{After: after}, func(e ipc.JournalEvent) error {
		b, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("event %d: %w", e.Seq, err)
		}
		if n == 0 {
			first = e.Seq
		}
		n, last = n+1, e.Seq
		w.Write(b)
		return w.WriteByte('\n')
	})
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return fmt.Errorf("journal export: %w", err)
	}
	if n == 0 {
		fmt.Fprintf(a.errOut, "exported no event (after %d) from %s\n", after, src)
	} else {
		fmt.Fprintf(a.errOut, "exported %d events (sequence %d to %d) from %s\n", n, first, last, src)
	}
	return nil
}
