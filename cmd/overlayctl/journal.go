package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"strings"

	"github.com/zlayer/overlayd/cmd/internal/replay"
	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/journal"
)

func (a *app) journalLs(args []string) error {
	var after, limit uint64
	o, err := a.outputFlag("journal ls", args, func(fs *flag.FlagSet) {
		fs.Uint64Var(&after, "after", 0, "list events after this sequence number")
		fs.Uint64Var(&limit, "limit", 0, "list at most this many events (0 = all)")
	})
	if err != nil {
		return err
	}
	src, err := a.open()
	if err != nil {
		return err
	}
	defer src.Close()
	n := uint64(0)
	emit := func(e ipc.JournalEvent) error {
		if o == "json" {
			b, err := json.Marshal(e)
			if err != nil {
				return err
			}
			sep := ",\n"
			if n == 0 {
				sep = ""
			}
			fmt.Fprintf(a.out, "%s%s", sep, b)
		} else {
			who := e.Op
			if e.RequestID != 0 {
				who += fmt.Sprintf(" #%d", e.RequestID)
			}
			if e.PeerUID != nil {
				who += fmt.Sprintf(" uid=%d pid=%d", *e.PeerUID, *e.PeerPID)
			}
			fmt.Fprintf(a.out, "%6d  %s  %s  %-24s %-34s %s\n", e.Seq, e.Time, e.ID, e.Type, "("+who+")", e.Payload)
		}
		n++
		return nil
	}
	if o == "json" {
		fmt.Fprint(a.out, "[")
		defer fmt.Fprint(a.out, "]\n")
	}
	stop := fmt.Errorf("limit")
	if src.store != nil {
		err := src.store.Iterate(after, false, func(e *journal.Envelope) error {
			if limit > 0 && n >= limit {
				return stop
			}
			return emit(replay.JournalEventOf(e))
		})
		if err != nil && err != stop {
			return err
		}
		return nil
	}
	for {
		page := uint32(10000)
		if limit > 0 && limit-n < uint64(page) {
			page = uint32(limit - n)
		}
		if page == 0 {
			return nil
		}
		r, err := src.client.Call(context.Background(), ipc.JournalList{AfterSeq: after, Limit: &page})
		if err != nil {
			return fmt.Errorf("journal_list: %w", err)
		}
		evs := r.(ipc.JournalEvents).Events
		for _, e := range evs {
			if err := emit(e); err != nil {
				return err
			}
			after = e.Seq
		}
		if len(evs) == 0 || (limit > 0 && n >= limit) {
			return nil
		}
	}
}

func (a *app) journalVerify(args []string) (bool, error) {
	o, err := a.outputFlag("journal verify", args, nil)
	if err != nil {
		return false, err
	}
	src, err := a.open()
	if err != nil {
		return false, err
	}
	defer src.Close()
	var rep replay.Report
	if src.store != nil {
		r, err := replay.Verify(src.store, nil, 0)
		if err != nil {
			return false, err
		}
		rep = *r
	} else {
		r, err := src.client.Call(context.Background(), ipc.JournalVerify{})
		if err != nil {
			return false, fmt.Errorf("journal_verify: %w", err)
		}
		if err := json.Unmarshal(r.(ipc.JournalReport).Report, &rep); err != nil {
			return false, err
		}
	}
	if o == "json" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		fmt.Fprintf(a.out, "%s\n", b)
		return rep.OK(), nil
	}
	printReport(a, &rep, src.client != nil)
	return rep.OK(), nil
}

func printReport(a *app, rep *replay.Report, online bool) {
	c := rep.Chain
	if c == nil {
		c = &journal.Report{}
	}
	where := "journal file (read-only)"
	if online {
		where = "running daemon"
	}
	fmt.Fprintf(a.out, "source:     %s\n", where)
	fmt.Fprintf(a.out, "events:     %d (sequence %d to %d)\n", c.Events, c.FirstSeq, c.LastSeq)
	fmt.Fprintf(a.out, "head hash:  %s\n", c.HeadHash)
	fmt.Fprintf(a.out, "replay:     %d events replayed\n", rep.Replayed)
	fmt.Fprintf(a.out, "snapshot:   %s\n", rep.Snapshot)
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
