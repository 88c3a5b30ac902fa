package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/zlayer/overlayd/cmd/internal/audit"
	"github.com/zlayer/overlayd/ipc"
)

// The query commands (journal ls, journal show, history, diff, state --at,
// journal stats) ask the query engine (cmd/internal/audit): offline the
// journal file, online the daemon (journal_query, state_dump at, …).

// querier opens the source and the engine over it; close it with
// src.Close.
func (a *app) querier(ctx context.Context) (audit.Querier, *source, error) {
	src, err := a.source(ctx)
	if err != nil {
		return nil, nil, err
	}
	if src.Online() {
		if a.scan {
			src.Close()
			return nil, nil, usageErrorf("--scan: the daemon holds the journal and answers from its index; stop it to scan the file")
		}
		return audit.NewRemote(src.client), src, nil
	}
	if a.scan {
		return audit.NewLocalScan(src.store), src, nil
	}
	return audit.NewLocal(src.store), src, nil
}

// queryError makes the engine's complaints about what was typed (a bad
// point, --ip, --cause, …) usage errors.
func queryError(err error) error {
	var ue *exitError
	if err == nil || errors.As(err, &ue) {
		return err
	}
	if errors.Is(err, audit.ErrBadPoint) || strings.HasPrefix(err.Error(), "--") {
		return &exitError{code: exitUsage, err: err}
	}
	return err
}

// point parses a SEQ|TIME|ULID argument or flag (usage error).
func point(flag, s string) (*audit.Point, error) {
	p, err := audit.ParsePoint(s)
	if err != nil {
		return nil, usageErrorf("%s: %v", flag, err)
	}
	return &p, nil
}

// eventLister prints events: a table (after the source line), a json
// array or jsonl.
type eventLister struct {
	p *printer
	t *table
}

func (a *app) eventLister(src *source, how string) *eventLister {
	l := &eventLister{p: a.printer()}
	if l.p.Table() {
		fmt.Fprintf(a.out, "source: %s%s\n", src, howNote(how))
		l.t = l.p.NewTable("SEQ", "TIME", "ID", "TYPE", "CAUSE", "PAYLOAD")
	}
	return l
}

// compactedNote says, in a table, that the journal starts after a
// checkpoint: earlier events are only in the archives.
func (a *app) compactedNote(ctx context.Context, q audit.Querier) {
	if !a.printer().Table() {
		return
	}
	if first, err := q.First(ctx); err == nil && first > 1 {
		fmt.Fprintf(a.out, "note: the journal starts at event %d; events 1..%d were compacted into archives (journal verify --archives <data-dir>/overlayd/archive)\n", first, first-1)
	}
}

func howNote(how string) string {
	switch how {
	case "index":
		return ", by the journal's index"
	case "scan":
		return ", by a scan (the index is not complete)"
	}
	return ""
}

func (l *eventLister) Event(e ipc.JournalEvent) error {
	if l.t == nil {
		return l.p.Item(e)
	}
	l.t.Row(fmt.Sprint(e.Seq), e.Time, e.ID, e.Type, causeOf(e), string(e.Payload))
	return nil
}

func (l *eventLister) End() error {
	if l.t != nil {
		return l.t.Flush()
	}
	return l.p.End()
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
	if e.Exe != "" {
		who += " exe=" + e.Exe
	}
	if e.RequestID == 0 && e.PeerUID == nil {
		who += " (reconcile)"
	}
	return who
}

func newJournalLsCmd(a *app) *cobra.Command {
	var (
		f            audit.Filter
		since, until string
		cidr         string
		pid          uint32
	)
	c := &cobra.Command{
		Use:   "ls",
		Short: "List journaled events, oldest first, filtered by type, op, time, object or cause",
		Long: `ls lists journaled events, oldest first (--reverse: newest first). Filters
combine (an event must match all; a repeated --type, any of them). --since and
--until take a sequence number, an RFC 3339 time (or a date) or a ULID, and
are inclusive. It uses the journal's index when it is complete (the source
line says so), else scans.`,
		Example: `  overlayctl journal ls --limit 20
  overlayctl journal ls --type ip_reserved --type ip_released --ip 10.200.3.7
  overlayctl journal ls --since 2026-12-01T00:00:00Z --cause request --pid 4242
  overlayctl journal ls --service web --reverse --limit 5 -o jsonl
  overlayctl journal ls --after 1000`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var err error
			if since != "" {
				if f.Since, err = point("--since", since); err != nil {
					return err
				}
			}
			if until != "" {
				if f.Until, err = point("--until", until); err != nil {
					return err
				}
			}
			if cidr != "" {
				if f.CIDR, err = audit.ParseCIDR(cidr); err != nil {
					return usageErrorf("--cidr: %v", err)
				}
			}
			if c.Flags().Changed("pid") {
				f.PID = &pid
			}
			if err := f.Validate(); err != nil {
				return usageErrorf("%v", err)
			}
			return a.journalLs(c.Context(), f)
		},
	}
	fl := c.Flags()
	fl.StringSliceVar(&f.Types, "type", nil, "only events of this type (repeatable, or comma-separated)")
	fl.StringVar(&f.Op, "op", "", "only events caused by this op (e.g. attach_container, nat_tick)")
	fl.StringVar(&since, "since", "", "only events at or after this point: SEQ, RFC 3339 time or ULID")
	fl.StringVar(&until, "until", "", "only events at or before this point: SEQ, RFC 3339 time or ULID")
	fl.StringVar(&f.Service, "service", "", "only events naming this service")
	fl.StringVar(&f.IP, "ip", "", "only events naming this address")
	fl.StringVar(&cidr, "cidr", "", "only events naming an address or prefix inside this prefix")
	fl.StringVar(&f.Peer, "peer", "", "only events naming this peer (public key)")
	fl.Uint32Var(&pid, "pid", 0, "only events requested by this process id")
	fl.StringVar(&f.Cause, "cause", "", "only events caused by a client request (request) or by the daemon itself (reconcile)")
	fl.IntVar(&f.Limit, "limit", 0, "list at most this many events (0: all)")
	fl.BoolVar(&f.Reverse, "reverse", false, "newest first")
	fl.Uint64Var(&f.After, "after", 0, "only events after this sequence number")
	return c
}

func (a *app) journalLs(ctx context.Context, f audit.Filter) error {
	return a.listEvents(ctx, "journal ls", f)
}

// listEvents prints the events f selects (journal ls, history); what
// names the command in errors.
func (a *app) listEvents(ctx context.Context, what string, f audit.Filter) error {
	q, src, err := a.querier(ctx)
	if err != nil {
		return err
	}
	defer src.Close()
	l := a.eventLister(src, q.How())
	a.compactedNote(ctx, q)
	if err := q.List(ctx, f, l.Event); err != nil {
		return queryError(fmt.Errorf("%s: %w", what, err))
	}
	return l.End()
}

func newJournalShowCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "show SEQ|ULID|TIME",
		Short: "One event: envelope, decoded payload, cause (op, request, uid, pid, executable), time, hashes",
		Long: `show prints one event: its sequence, id, time, type and version, its cause
(the op, the request id, the caller's uid, pid and executable, or the daemon
itself), its hash and the hash it links to, and its decoded payload. A time
names the last event at or before it.`,
		Example: "  overlayctl journal show 1200\n  overlayctl journal show 01JDZ8X6Q3M0V7C2W9K4T5R8YB -o json",
		Args:    exactArgs(1, "one event: a sequence number, a ULID or a time"),
		RunE: func(c *cobra.Command, args []string) error {
			if _, err := point("journal show", args[0]); err != nil {
				return err
			}
			return a.journalShow(c.Context(), args[0])
		},
	}
}

func (a *app) journalShow(ctx context.Context, ref string) error {
	q, src, err := a.querier(ctx)
	if err != nil {
		return err
	}
	defer src.Close()
	e, err := q.Show(ctx, ref)
	if err != nil {
		return queryError(fmt.Errorf("journal show: %w", err))
	}
	p := a.printer()
	if !p.Table() {
		return p.Object(struct {
			Source string `json:"source"`
			ipc.JournalEvent
		}{src.String(), *e})
	}
	w := a.out
	fmt.Fprintf(w, "source:     %s\n", src)
	fmt.Fprintf(w, "seq:        %d\n", e.Seq)
	fmt.Fprintf(w, "id:         %s\n", e.ID)
	fmt.Fprintf(w, "time:       %s\n", e.Time)
	fmt.Fprintf(w, "type:       %s (version %d)\n", e.Type, e.Version)
	fmt.Fprintf(w, "cause:      %s\n", causeLong(*e))
	fmt.Fprintf(w, "hash:       %s\n", e.Hash)
	fmt.Fprintf(w, "prev hash:  %s\n", dash(e.PrevHash))
	var buf strings.Builder
	var v any
	if err := json.Unmarshal(e.Payload, &v); err == nil {
		b, _ := json.MarshalIndent(v, "  ", "  ")
		buf.Write(b)
	} else {
		buf.Write(e.Payload)
	}
	fmt.Fprintf(w, "payload:\n  %s\n", buf.String())
	return nil
}

// causeLong is an event's cause spelled out.
func causeLong(e ipc.JournalEvent) string {
	parts := []string{"op " + e.Op}
	if e.RequestID != 0 {
		parts = append(parts, fmt.Sprintf("request #%d", e.RequestID))
	}
	if e.PeerUID != nil {
		parts = append(parts, fmt.Sprintf("uid %d", *e.PeerUID))
	}
	if e.PeerPID != nil {
		parts = append(parts, fmt.Sprintf("pid %d", *e.PeerPID))
	}
	if e.Exe != "" {
		parts = append(parts, "exe "+e.Exe)
	}
	if e.RequestID == 0 && e.PeerUID == nil {
		parts = append(parts, "by the daemon itself (reconcile)")
	}
	return strings.Join(parts, ", ")
}

func newHistoryCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "history OBJECT",
		Short: "Every event that touched an object (IP, DNS name, service, peer key, container handle, device or bridge), in order",
		Long: `history lists, oldest first, every event whose payload names OBJECT, with its
cause: an IP address or prefix, a DNS name, a service name, a peer's public
key, a container handle (linux_pid:4242, guest_managed:vm-1) or a device or
bridge name.`,
		Example: `  overlayctl history 10.200.3.7
  overlayctl history web
  overlayctl history linux_pid:4242 -o jsonl`,
		Args: exactArgs(1, "one object"),
		RunE: func(c *cobra.Command, args []string) error { return a.history(c.Context(), args[0]) },
	}
}

// history is the events whose payload names object (audit's History is
// this filter).
func (a *app) history(ctx context.Context, object string) error {
	return a.listEvents(ctx, "history "+object, audit.Filter{Object: object})
}

func newDiffCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "diff A B",
		Short: "Objects added, removed and changed between two points of the journal (SEQ|TIME|ULID|head)",
		Example: `  overlayctl diff 1000 head
  overlayctl diff 2026-11-30T00:00:00Z 2026-12-01T00:00:00Z -o json`,
		Args: exactArgs(2, "two points A and B"),
		RunE: func(c *cobra.Command, args []string) error {
			pa, err := point("diff A", args[0])
			if err != nil {
				return err
			}
			pb, err := point("diff B", args[1])
			if err != nil {
				return err
			}
			return a.diff(c.Context(), *pa, *pb)
		},
	}
}

func (a *app) diff(ctx context.Context, pa, pb audit.Point) error {
	q, src, err := a.querier(ctx)
	if err != nil {
		return err
	}
	defer src.Close()
	sa, err := q.StateAt(ctx, pa)
	if err != nil {
		return queryError(fmt.Errorf("diff: state at %s: %w", pa, err))
	}
	sb, err := q.StateAt(ctx, pb)
	if err != nil {
		return queryError(fmt.Errorf("diff: state at %s: %w", pb, err))
	}
	d, err := audit.DiffStates(sa, sb)
	if err != nil {
		return fmt.Errorf("diff: %w", err)
	}
	p := a.printer()
	switch a.output {
	case "json":
		return p.Object(struct {
			Source string `json:"source"`
			audit.Diff
		}{src.String(), d})
	case "jsonl":
		for _, c := range d.Changes {
			if err := p.Item(c); err != nil {
				return err
			}
		}
		return nil
	}
	fmt.Fprintf(a.out, "source: %s\n", src)
	fmt.Fprintf(a.out, "from event %d (%s) to event %d (%s): %d change(s)\n", d.FromSeq, pa, d.ToSeq, pb, len(d.Changes))
	if len(d.Changes) == 0 {
		return nil
	}
	t := p.NewTable("ACTION", "KIND", "KEY", "BEFORE", "AFTER")
	for _, c := range d.Changes {
		t.Row(c.Action, c.Kind, c.Key, string(c.Before), string(c.After))
	}
	return t.Flush()
}

func newJournalStatsCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "stats",
		Short: "Counts and bytes of the journal's events by type, by op and by day",
		Args:  noArgs,
		RunE:  func(c *cobra.Command, _ []string) error { return a.journalStats(c.Context()) },
	}
}

func (a *app) journalStats(ctx context.Context) error {
	q, src, err := a.querier(ctx)
	if err != nil {
		return err
	}
	defer src.Close()
	s, err := q.Stats(ctx)
	if err != nil {
		return fmt.Errorf("journal stats: %w", err)
	}
	p := a.printer()
	switch a.output {
	case "json":
		return p.Object(struct {
			Source string `json:"source"`
			*audit.Stats
		}{src.String(), s})
	case "jsonl":
		for _, g := range []struct {
			by   string
			rows []audit.Count
		}{{"type", s.ByType}, {"op", s.ByOp}, {"day", s.ByDay}} {
			for _, r := range g.rows {
				if err := p.Item(struct {
					By string `json:"by"`
					audit.Count
				}{g.by, r}); err != nil {
					return err
				}
			}
		}
		return nil
	}
	w := a.out
	fmt.Fprintf(w, "source: %s\n", src)
	fmt.Fprintf(w, "events: %d (sequence %d to %d, %s to %s), %s\n", s.Events, s.FirstSeq, s.LastSeq, dash(s.First), dash(s.Last), humanBytes(s.Bytes))
	for _, g := range []struct {
		head string
		rows []audit.Count
	}{{"TYPE", s.ByType}, {"OP", s.ByOp}, {"DAY", s.ByDay}} {
		fmt.Fprintln(w)
		t := p.NewTable(g.head, "EVENTS", "BYTES", "SHARE")
		for _, r := range g.rows {
			share := 0.0
			if s.Events > 0 {
				share = 100 * float64(r.Events) / float64(s.Events)
			}
			t.Row(r.Key, fmt.Sprint(r.Events), fmt.Sprint(r.Bytes), fmt.Sprintf("%.1f%%", share))
		}
		if err := t.Flush(); err != nil {
			return err
		}
	}
	return nil
}
