package audit

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/zlayer/overlayd/cmd/internal/replay"
	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/journal"
	"github.com/zlayer/overlayd/projections"
)

// Local answers from a journal store.
type Local struct {
	store journal.Store
	r     reader
	how   string
}

var _ Querier = (*Local)(nil)

// NewLocal queries store, through its indexes when it has complete ones.
func NewLocal(store journal.Store) *Local {
	l := &Local{store: store, r: scanReader{store}, how: "scan"}
	if r, ready, ok := indexedReader(store); ok {
		l.r = r
		if ready {
			l.how = "index"
		}
	}
	return l
}

// NewLocalScan queries store by reading every event it needs to, never
// its index or kept states (only the snapshot file): the baseline the
// index is measured against, and a cross-check of it.
func NewLocalScan(store journal.Store) *Local {
	return &Local{store: store, r: scanReader{store}, how: "scan"}
}

// How is "index" or "scan".
func (l *Local) How() string { return l.how }

func (l *Local) Head(context.Context) (uint64, error) { return l.r.head(), nil }

// First implements Querier.
func (l *Local) First(context.Context) (uint64, error) { return l.r.first() }

// seqOf resolves p to a sequence. For a time, until gives the last event
// at or before it, otherwise the first event at or after it.
func (l *Local) seqOf(p Point, until bool) (uint64, error) {
	switch p.Kind {
	case PointSeq:
		return p.Seq, nil
	case PointHead:
		return l.r.head(), nil
	case PointID:
		seq, err := l.r.seqOfID(p.ID)
		if errors.Is(err, journal.ErrNotFound) {
			return 0, fmt.Errorf("no event has id %s", p.ID)
		}
		return seq, err
	case PointTime:
		if until {
			return l.r.seqAtTime(p.Time)
		}
		seq, err := l.r.seqAtTime(p.Time.Add(-time.Nanosecond))
		return seq + 1, err
	}
	return 0, fmt.Errorf("%w: %q", ErrBadPoint, p.Text)
}

// bounds is the inclusive sequence range f selects.
func (l *Local) bounds(f *Filter) (from, to uint64, err error) {
	from, to = max(f.After+1, 1), l.r.head()
	if f.Before > 0 {
		to = min(to, f.Before-1)
	}
	if f.Since != nil {
		s, err := l.seqOf(*f.Since, false)
		if err != nil {
			return 0, 0, fmt.Errorf("--since %s: %w", f.Since, err)
		}
		from = max(from, s)
	}
	if f.Until != nil {
		u, err := l.seqOf(*f.Until, true)
		if err != nil {
			return 0, 0, fmt.Errorf("--until %s: %w", f.Until, err)
		}
		to = min(to, u)
	}
	return from, to, nil
}

// List implements Querier.
func (l *Local) List(ctx context.Context, f Filter, fn func(ipc.JournalEvent) error) error {
	if err := f.Validate(); err != nil {
		return err
	}
	gs, err := f.groups()
	if err != nil {
		return err
	}
	from, to, err := l.bounds(&f)
	if err != nil || from > to {
		return err
	}
	n := 0
	emit := func(e *journal.Envelope) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !f.causeMatches(e.Cause) {
			return nil
		}
		rest := gs
		if len(rest) > 0 {
			ts := eventTerms(e)
			for _, g := range rest {
				if !g.match(ts) {
					return nil
				}
			}
		}
		if err := fn(EventOf(e)); err != nil {
			return err
		}
		n++
		if f.Limit > 0 && n >= f.Limit {
			return errStop
		}
		return nil
	}
	if len(gs) > 0 {
		seqs, ok, err := l.candidates(gs[0], from, to, f.Reverse, f.Limit, len(gs) > 1 || f.PID != nil || f.Cause != "")
		if err != nil {
			return err
		}
		if ok {
			for _, seq := range seqs {
				e, err := l.r.get(seq)
				if err != nil {
					return fmt.Errorf("event %d: %w", seq, err)
				}
				if err := emit(e); err != nil {
					if err == errStop {
						return nil
					}
					return err
				}
			}
			return nil
		}
	}
	err = l.r.rng(from, to, f.Reverse, emit)
	if err == errStop {
		return nil
	}
	return err
}

// candidates lists, from the index, the sequences in [from, to] that carry
// one of g's terms, in the order asked; ok is false without an index. With
// exact unset (no other filter), at most limit are listed.
func (l *Local) candidates(g group, from, to uint64, reverse bool, limit int, more bool) ([]uint64, bool, error) {
	terms := g.terms
	if g.cidr != nil {
		terms = nil
		for _, kind := range []string{projections.TermIP, projections.TermCIDR} {
			ok, err := l.r.terms(kind, func(t string) error {
				if termInPrefix(t, *g.cidr) {
					terms = append(terms, t)
				}
				return nil
			})
			if err != nil || !ok {
				return nil, ok, err
			}
		}
	}
	per := 0
	if !more {
		per = limit
	}
	var all []uint64
	for _, t := range terms {
		k := 0
		ok, err := l.r.postings(t, from, to, reverse, func(seq uint64) error {
			all = append(all, seq)
			k++
			if per > 0 && k >= per {
				return errStop
			}
			return nil
		})
		if err == errStop {
			err = nil
		}
		if err != nil || !ok {
			return nil, ok, err
		}
	}
	if len(terms) > 1 {
		slices.Sort(all)
		all = slices.Compact(all)
		if reverse {
			slices.Reverse(all)
		}
		if per > 0 && len(all) > per {
			all = all[:per]
		}
	}
	return all, true, nil
}

// Show implements Querier.
func (l *Local) Show(_ context.Context, ref string) (*ipc.JournalEvent, error) {
	p, err := ParsePoint(ref)
	if err != nil {
		return nil, err
	}
	seq, err := l.seqOf(p, true)
	if err != nil {
		return nil, err
	}
	e, err := l.r.get(seq)
	if errors.Is(err, journal.ErrNotFound) || seq == 0 {
		return nil, l.notHeld(seq, ref)
	}
	if err != nil {
		return nil, err
	}
	je := EventOf(e)
	return &je, nil
}

// notHeld explains a sequence the journal does not hold.
func (l *Local) notHeld(seq uint64, ref string) error {
	first, _ := l.r.first()
	head := l.r.head()
	switch {
	case head == 0:
		return fmt.Errorf("no event %s: the journal is empty", ref)
	case seq > head:
		return fmt.Errorf("no event %s: the journal ends at sequence %d", ref, head)
	case seq < first:
		return fmt.Errorf("no event %s: the journal starts at sequence %d (earlier events were compacted into an archive)", ref, first)
	}
	return fmt.Errorf("no event %s", ref)
}

// History implements Querier.
func (l *Local) History(ctx context.Context, object string, fn func(ipc.JournalEvent) error) error {
	return l.List(ctx, Filter{Object: object}, fn)
}

// StateAt implements Querier: the newest stored state at or before the
// point (a retained state, the snapshot), then the events up to it.
func (l *Local) StateAt(ctx context.Context, p Point) (*projections.State, error) {
	seq, err := l.seqOf(p, true)
	if err != nil {
		return nil, err
	}
	head := l.r.head()
	if seq > head {
		return nil, fmt.Errorf("the journal ends at sequence %d", head)
	}
	st := projections.New()
	sn, err := l.r.stateAtOrBefore(seq)
	if err != nil {
		return nil, err
	}
	if sn != nil && sn.Schema == projections.SnapshotSchema {
		if s, err := projections.DecodeSnapshot(sn.Body); err == nil {
			st = s
		}
	}
	// A compacted journal starts from its checkpoint's state.
	if ck := journal.CheckpointOf(l.store); ck != nil && ck.Seq > st.Seq {
		if seq < ck.Seq {
			return nil, fmt.Errorf("events up to %d were compacted into archive %s (verify it with journal verify --archives)", ck.Seq, ck.Archive().Name)
		}
		cs, err := replay.CheckpointStateOf(l.store)
		if err != nil {
			return nil, fmt.Errorf("the checkpoint's state: %w", err)
		}
		st = cs
	}
	if first, err := l.r.first(); err != nil {
		return nil, err
	} else if first > st.Seq+1 && seq >= st.Seq+1 {
		return nil, fmt.Errorf("events %d..%d were compacted into an archive and no state is kept for them", st.Seq+1, first-1)
	}
	if seq == st.Seq {
		return st, nil
	}
	err = l.r.rng(st.Seq+1, seq, false, func(e *journal.Envelope) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return replay.Fold(st, e)
	})
	if err != nil {
		return nil, err
	}
	if st.Seq != seq {
		return nil, fmt.Errorf("the journal holds events up to %d only", st.Seq)
	}
	return st, nil
}

// ParseCIDR reads a --cidr value.
func ParseCIDR(s string) (*netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return nil, fmt.Errorf("--cidr %q: not a prefix like 10.200.3.0/24", s)
	}
	p = p.Masked()
	return &p, nil
}
