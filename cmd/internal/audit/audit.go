// Package audit answers an operator's questions of the journal: events by
// filter (type, op, time or sequence range, the objects they touch, who
// caused them), one event, the history of one object, the state at any
// earlier point, the difference between two states, and counts. Local
// answers from a journal store (overlayctl with the daemon stopped, and
// the daemon itself answering journal_query); Remote asks a running daemon
// over its socket. Both give the same answers.
//
// Local uses the journal's secondary indexes (journal/doc.go, "Indexes")
// when the store has them and they are complete, and scans otherwise: the
// answers are the same, only the time differs (How says which).
package audit

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/zlayer/overlayd/cmd/internal/replay"
	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/journal"
	"github.com/zlayer/overlayd/projections"
)

// Filter selects events; every given field must match (a repeated one, any
// of its values).
type Filter struct {
	Types        []string
	Op           string
	Since, Until *Point // inclusive
	After        uint64 // only events with a greater sequence
	Before       uint64 // only events with a smaller sequence (0: none)
	Service      string
	IP           string
	CIDR         *netip.Prefix
	Peer         string
	PID          *uint32
	Cause        string // "", "request" (sent by a client) or "reconcile" (the daemon's own)
	Object       string // anything history accepts
	Limit        int    // 0: all
	Reverse      bool   // newest first
}

// Causes accepted by Filter.Cause.
const (
	CauseRequest   = "request"
	CauseReconcile = "reconcile"
)

// Validate checks the fields an operator typed, naming the bad one.
func (f *Filter) Validate() error {
	if f.IP != "" {
		a, err := netip.ParseAddr(f.IP)
		if err != nil {
			return fmt.Errorf("--ip %q: not an IP address", f.IP)
		}
		f.IP = a.Unmap().String()
	}
	switch f.Cause {
	case "", CauseRequest, CauseReconcile:
	default:
		return fmt.Errorf("--cause %q: want %s or %s", f.Cause, CauseRequest, CauseReconcile)
	}
	if f.Limit < 0 {
		return fmt.Errorf("--limit %d: must not be negative", f.Limit)
	}
	for _, t := range f.Types {
		if t == "" {
			return errors.New("--type: empty")
		}
	}
	return nil
}

// Querier answers queries from a journal (Local) or a daemon (Remote).
type Querier interface {
	// Head is the last committed sequence.
	Head(ctx context.Context) (uint64, error)
	// First is the first sequence the journal holds: 1, or the one after
	// a compaction's checkpoint (0 when empty).
	First(ctx context.Context) (uint64, error)
	// List calls fn for each event matching f, oldest first (newest with
	// Reverse), at most f.Limit.
	List(ctx context.Context, f Filter, fn func(ipc.JournalEvent) error) error
	// Show returns one event by sequence or ULID (or the last one at or
	// before a time).
	Show(ctx context.Context, ref string) (*ipc.JournalEvent, error)
	// History lists every event whose payload names object, oldest first.
	History(ctx context.Context, object string, fn func(ipc.JournalEvent) error) error
	// StateAt returns the state after the event at p.
	StateAt(ctx context.Context, p Point) (*projections.State, error)
	// Stats counts the journal's events and bytes.
	Stats(ctx context.Context) (*Stats, error)
	// How says how the answers are found: "index", "scan" or "daemon".
	How() string
}

// EventOf is the wire form of a stored event.
func EventOf(e *journal.Envelope) ipc.JournalEvent { return replay.JournalEventOf(e) }

// group is one filter over the objects (or type, or op) an event names:
// an event matches when it carries one of terms, or (cidr) an address or
// prefix inside it.
type group struct {
	terms []string
	cidr  *netip.Prefix
}

func (g group) match(ts []string) bool {
	for _, t := range g.terms {
		if _, ok := slices.BinarySearch(ts, t); ok {
			return true
		}
	}
	if g.cidr != nil {
		for _, t := range ts {
			if termInPrefix(t, *g.cidr) {
				return true
			}
		}
	}
	return false
}

// termInPrefix: an ip: term inside p, or a cidr: term that overlaps it.
func termInPrefix(t string, p netip.Prefix) bool {
	if s, ok := strings.CutPrefix(t, projections.TermIP); ok {
		a, err := netip.ParseAddr(s)
		return err == nil && p.Contains(a)
	}
	if s, ok := strings.CutPrefix(t, projections.TermCIDR); ok {
		q, err := netip.ParsePrefix(s)
		return err == nil && p.Overlaps(q)
	}
	return false
}

// eventTerms are an event's object terms plus its type and op, sorted.
func eventTerms(e *journal.Envelope) []string {
	ts := projections.Terms(e.Type, e.Version, e.Payload)
	ts = append(ts, "type:"+e.Type, "op:"+e.Cause.Op)
	slices.Sort(ts)
	return ts
}

// groups turns f's object filters into groups, most selective first (the
// first one drives an indexed query).
func (f *Filter) groups() ([]group, error) {
	var gs []group
	if f.IP != "" {
		gs = append(gs, group{terms: []string{projections.TermIP + f.IP}})
	}
	if f.Peer != "" {
		gs = append(gs, group{terms: []string{projections.TermPeer + f.Peer}})
	}
	if f.Object != "" {
		if p, err := netip.ParsePrefix(strings.TrimSpace(f.Object)); err == nil {
			p = p.Masked()
			gs = append(gs, group{cidr: &p})
		} else {
			ts := projections.ObjectTerms(f.Object)
			if len(ts) == 0 {
				return nil, errors.New("history: empty object")
			}
			gs = append(gs, group{terms: ts})
		}
	}
	if f.Service != "" {
		gs = append(gs, group{terms: []string{projections.TermService + f.Service}})
	}
	if f.CIDR != nil {
		p := f.CIDR.Masked()
		gs = append(gs, group{cidr: &p})
	}
	if f.Op != "" {
		gs = append(gs, group{terms: []string{"op:" + f.Op}})
	}
	if len(f.Types) > 0 {
		g := group{}
		for _, t := range f.Types {
			g.terms = append(g.terms, "type:"+t)
		}
		gs = append(gs, g)
	}
	return gs, nil
}

// causeMatches applies Filter.Cause and Filter.PID.
func (f *Filter) causeMatches(c journal.Cause) bool {
	if f.PID != nil && (!c.HasPeer || c.PID != *f.PID) {
		return false
	}
	switch f.Cause {
	case CauseRequest:
		return c.HasPeer || c.RequestID != 0
	case CauseReconcile:
		return !c.HasPeer && c.RequestID == 0
	}
	return true
}
