package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/zlayer/overlayd/ipc"
)

func newJournalFollowCmd(a *app) *cobra.Command {
	var after, limit uint64
	c := &cobra.Command{
		Use:   "follow",
		Short: "Stream events as they commit (live daemon), reconnecting across restarts",
		Long: `follow prints every committed event after --after (default: those committed
from now on), in order, then each new one as the daemon commits it
(extension op journal_follow). When the daemon restarts, follow reconnects
(with back-off) and resumes after the last event it printed: no event is
printed twice and none is skipped; a gap (the journal was compacted past the
point) is an error naming it. It runs until interrupted (exit 0) or --limit
events are printed. It needs the daemon (exit 3 when its socket does not
answer at the start).

-o table prints a line per event (flushed at once); -o json an indented
JSON object per event, one after the other (like kubectl get -w -o json);
-o jsonl one compact object a line.`,
		Example: `  overlayctl journal follow
  overlayctl journal follow --after 0 -o jsonl | jq .type
  overlayctl journal follow --after 1200 --limit 10`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			from := &after
			if !c.Flags().Changed("after") {
				from = nil
			}
			return a.journalFollow(c.Context(), from, limit)
		},
	}
	c.Flags().Uint64Var(&after, "after", 0, "print the events after this sequence number first (default: only new events)")
	c.Flags().Uint64Var(&limit, "limit", 0, "stop after this many events (0: run until interrupted)")
	return c
}

func (a *app) journalFollow(ctx context.Context, after *uint64, limit uint64) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	sock := a.socketPath()
	dial := func(ctx context.Context) (*ipc.Client, error) {
		return ipc.Dial(ctx, a.socketPath(), ipc.DialOptions{CallTimeout: 30 * time.Second})
	}
	first, err := dial(ctx)
	if err != nil {
		return unreachable(fmt.Errorf("journal follow needs the daemon, which does not answer on %s: %w", sock, err))
	}
	from := uint64(0)
	if after != nil {
		from = *after
	} else {
		r, err := first.Call(ctx, ipc.JournalList{AfterSeq: ^uint64(0) - 1, Limit: new(uint32)})
		if err != nil {
			first.Close()
			return fmt.Errorf("journal follow: the journal's head: %w", err)
		}
		from = r.(ipc.JournalEvents).HeadSeq
	}
	used := false
	dialer := func(ctx context.Context) (*ipc.Client, error) {
		if !used {
			used = true
			return first, nil
		}
		return dial(ctx)
	}
	p := a.printer()
	if p.Table() {
		fmt.Fprintf(a.out, "source: live daemon (socket %s), following after event %d\n", sock, from)
		fmt.Fprintf(a.out, "%-8s  %-30s  %-26s  %-24s  %-40s  %s\n", "SEQ", "TIME", "ID", "TYPE", "CAUSE", "PAYLOAD")
	}
	n := uint64(0)
	errLimit := errors.New("limit reached")
	err = ipc.FollowWith(ctx, dialer, from, func(e ipc.JournalEvent) error {
		var werr error
		switch a.output {
		case "table":
			_, werr = fmt.Fprintf(a.out, "%-8d  %-30s  %-26s  %-24s  %-40s  %s\n", e.Seq, e.Time, e.ID, e.Type, causeOf(e), e.Payload)
		case "json":
			var b []byte
			if b, werr = json.MarshalIndent(e, "", "  "); werr == nil {
				_, werr = fmt.Fprintf(a.out, "%s\n", b)
			}
		default:
			var b []byte
			if b, werr = json.Marshal(e); werr == nil {
				_, werr = fmt.Fprintf(a.out, "%s\n", b)
			}
		}
		if werr != nil {
			return werr
		}
		if n++; limit > 0 && n >= limit {
			return errLimit
		}
		return nil
	}, ipc.FollowOptions{OnReconnect: func(err error, wait time.Duration) {
		fmt.Fprintf(a.errOut, "overlayctl: journal follow: the connection to the daemon was lost (%v); reconnecting in %v\n", err, wait)
	}})
	switch {
	case errors.Is(err, errLimit), errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return nil
	}
	return fmt.Errorf("journal follow: %w", err)
}
