package audit

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/projections"
)

// pageSize is the most events one journal_query answer carries: a few MiB
// of JSON, well under a frame.
const pageSize = 2000

// Remote asks a running daemon (extension ops journal_query, journal_stats
// and state_dump with at).
type Remote struct{ c *ipc.Client }

var _ Querier = (*Remote)(nil)

// NewRemote queries the daemon on c.
func NewRemote(c *ipc.Client) *Remote { return &Remote{c: c} }

// How is "daemon".
func (*Remote) How() string { return "daemon" }

func (r *Remote) Head(ctx context.Context) (uint64, error) {
	one := uint32(1)
	resp, err := r.c.Call(ctx, ipc.JournalQuery{Limit: &one, Reverse: true})
	if err != nil {
		return 0, err
	}
	return resp.(ipc.JournalPage).HeadSeq, nil
}

// First implements Querier: the first event the daemon's journal holds.
func (r *Remote) First(ctx context.Context) (uint64, error) {
	one := uint32(1)
	resp, err := r.c.Call(ctx, ipc.JournalQuery{Limit: &one})
	if err != nil {
		return 0, err
	}
	if p := resp.(ipc.JournalPage); len(p.Events) > 0 {
		return p.Events[0].Seq, nil
	}
	return 0, nil
}

// QueryOf is the journal_query request for f (without paging).
func QueryOf(f Filter) ipc.JournalQuery {
	q := ipc.JournalQuery{Types: f.Types, Reverse: f.Reverse, PID: f.PID}
	str := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	q.OpName, q.Service, q.IP, q.Peer, q.Object = str(f.Op), str(f.Service), str(f.IP), str(f.Peer), str(f.Object)
	q.Cause = str(f.Cause)
	if f.Since != nil {
		q.Since = str(f.Since.String())
	}
	if f.Until != nil {
		q.Until = str(f.Until.String())
	}
	if f.CIDR != nil {
		q.CIDR = str(f.CIDR.String())
	}
	after, before := f.After, f.Before
	switch {
	case !f.Reverse && after > 0:
		q.Cursor = &after
	case f.Reverse && before > 0:
		q.Cursor = &before
	}
	return q
}

// FilterOf reads a journal_query request back into a Filter.
func FilterOf(q ipc.JournalQuery) (Filter, error) {
	f := Filter{Types: q.Types, Reverse: q.Reverse, PID: q.PID}
	val := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	f.Op, f.Service, f.IP, f.Peer, f.Object, f.Cause = val(q.OpName), val(q.Service), val(q.IP), val(q.Peer), val(q.Object), val(q.Cause)
	for _, pt := range []struct {
		name string
		s    *string
		dst  **Point
	}{{"since", q.Since, &f.Since}, {"until", q.Until, &f.Until}} {
		if pt.s == nil {
			continue
		}
		p, err := ParsePoint(*pt.s)
		if err != nil {
			return f, fmt.Errorf("%s: %w", pt.name, err)
		}
		*pt.dst = &p
	}
	if q.CIDR != nil {
		p, err := ParseCIDR(*q.CIDR)
		if err != nil {
			return f, err
		}
		f.CIDR = p
	}
	if q.Cursor != nil {
		if f.Reverse {
			f.Before = *q.Cursor
		} else {
			f.After = *q.Cursor
		}
	}
	return f, f.Validate()
}

// Answer runs a journal_query on l: one page, with the cursor of the next.
func Answer(ctx context.Context, l *Local, q ipc.JournalQuery) ipc.Response {
	head, _ := l.Head(ctx)
	page := ipc.JournalPage{HeadSeq: head, Events: []ipc.JournalEvent{}, How: l.How()}
	if q.Ref != nil {
		e, err := l.Show(ctx, *q.Ref)
		if err != nil {
			return ipc.Err{Message: "journal_query: " + err.Error()}
		}
		page.Events = append(page.Events, *e)
		return page
	}
	f, err := FilterOf(q)
	if err != nil {
		return ipc.Err{Message: "journal_query: " + err.Error()}
	}
	f.Limit = pageSize
	if q.Limit != nil && *q.Limit > 0 {
		f.Limit = min(int(*q.Limit), pageSize)
	}
	err = l.List(ctx, f, func(e ipc.JournalEvent) error {
		page.Events = append(page.Events, e)
		return nil
	})
	if err != nil {
		return ipc.Err{Message: "journal_query: " + err.Error()}
	}
	if len(page.Events) == f.Limit {
		next := page.Events[len(page.Events)-1].Seq
		page.Next = &next
	}
	return page
}

// List implements Querier, page by page.
func (r *Remote) List(ctx context.Context, f Filter, fn func(ipc.JournalEvent) error) error {
	if err := f.Validate(); err != nil {
		return err
	}
	q := QueryOf(f)
	n := 0
	for {
		page := uint32(pageSize)
		if f.Limit > 0 {
			page = uint32(min(f.Limit-n, pageSize))
		}
		q.Limit = &page
		resp, err := r.c.Call(ctx, q)
		if err != nil {
			return err
		}
		p := resp.(ipc.JournalPage)
		for _, e := range p.Events {
			if err := fn(e); err != nil {
				return err
			}
			n++
		}
		if p.Next == nil || (f.Limit > 0 && n >= f.Limit) {
			return nil
		}
		q.Cursor = p.Next
	}
}

func (r *Remote) Show(ctx context.Context, ref string) (*ipc.JournalEvent, error) {
	if _, err := ParsePoint(ref); err != nil {
		return nil, err
	}
	resp, err := r.c.Call(ctx, ipc.JournalQuery{Ref: &ref})
	if err != nil {
		return nil, err
	}
	p := resp.(ipc.JournalPage)
	if len(p.Events) != 1 {
		return nil, fmt.Errorf("journal_query: asked for one event, got %d", len(p.Events))
	}
	return &p.Events[0], nil
}

func (r *Remote) History(ctx context.Context, object string, fn func(ipc.JournalEvent) error) error {
	return r.List(ctx, Filter{Object: object}, fn)
}

func (r *Remote) StateAt(ctx context.Context, p Point) (*projections.State, error) {
	at := p.String()
	if p.Kind == PointHead {
		at = ""
	}
	_, raw, err := ipc.FetchStateAt(ctx, r.c, at)
	if err != nil {
		return nil, err
	}
	return projections.ParseCanonicalJSON(raw)
}

func (r *Remote) Stats(ctx context.Context) (*Stats, error) {
	resp, err := r.c.Call(ctx, ipc.JournalStats{})
	if err != nil {
		return nil, err
	}
	var s Stats
	if err := json.Unmarshal(resp.(ipc.JournalStatsResult).Stats, &s); err != nil {
		return nil, fmt.Errorf("journal_stats: %w", err)
	}
	return &s, nil
}
