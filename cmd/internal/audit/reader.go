package audit

import (
	"errors"
	"slices"
	"sort"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/zlayer/overlayd/journal"
)

// reader is what the engine needs of a journal. indexReader serves it
// from the journal's secondary indexes when it has them; scanReader from
// Iterate alone (an old journal opened read-only, a MemStore).
type reader interface {
	head() uint64
	// first is the first sequence the journal holds (1, or the one after a
	// compaction's checkpoint); 0 when empty.
	first() (uint64, error)
	get(seq uint64) (*journal.Envelope, error)
	rng(from, to uint64, reverse bool, fn func(*journal.Envelope) error) error
	seqAtTime(t time.Time) (uint64, error)
	seqOfID(id ulid.ULID) (uint64, error)
	// postings and terms report ok=false when there is no usable index.
	postings(term string, from, to uint64, reverse bool, fn func(uint64) error) (bool, error)
	terms(prefix string, fn func(string) error) (bool, error)
	// stateAtOrBefore is the newest stored state (retained state or
	// snapshot) at or before seq, nil when none.
	stateAtOrBefore(seq uint64) (*journal.Snapshot, error)
}

var errStop = errors.New("stop")

// scanReader reads through Store.Iterate only.
type scanReader struct{ s journal.Store }

func (r scanReader) head() uint64 { h, _ := r.s.Head(); return h }

func (r scanReader) first() (uint64, error) {
	var first uint64
	err := r.s.Iterate(0, false, func(e *journal.Envelope) error { first = e.Seq; return errStop })
	if err != nil && err != errStop {
		return 0, err
	}
	return first, nil
}

func (r scanReader) get(seq uint64) (*journal.Envelope, error) {
	var out *journal.Envelope
	if seq == 0 {
		return nil, journal.ErrNotFound
	}
	err := r.s.Iterate(seq-1, false, func(e *journal.Envelope) error {
		if e.Seq == seq {
			c := *e
			c.Payload = slices.Clone(e.Payload)
			out = &c
		}
		return errStop
	})
	if err != nil && err != errStop {
		return nil, err
	}
	if out == nil {
		return nil, journal.ErrNotFound
	}
	return out, nil
}

func (r scanReader) rng(from, to uint64, reverse bool, fn func(*journal.Envelope) error) error {
	if to == 0 {
		to = r.head()
	}
	if from > to {
		return nil
	}
	if !reverse {
		err := r.s.Iterate(max(from, 1)-1, false, func(e *journal.Envelope) error {
			if e.Seq > to {
				return errStop
			}
			return fn(e)
		})
		if err == errStop {
			return nil
		}
		return err
	}
	// Backwards by windows of events, newest window first.
	const window = 4096
	hi := to
	for hi >= max(from, 1) {
		lo := max(from, 1)
		if hi >= window && hi-window+1 > lo {
			lo = hi - window + 1
		}
		var buf []journal.Envelope
		err := r.s.Iterate(lo-1, false, func(e *journal.Envelope) error {
			if e.Seq > hi {
				return errStop
			}
			c := *e
			c.Payload = slices.Clone(e.Payload)
			buf = append(buf, c)
			return nil
		})
		if err != nil && err != errStop {
			return err
		}
		for i := len(buf) - 1; i >= 0; i-- {
			if err := fn(&buf[i]); err != nil {
				return err
			}
		}
		if lo <= max(from, 1) {
			break
		}
		hi = lo - 1
	}
	return nil
}

// seqAtTime and seqOfID bisect over get: times and ULIDs grow with the
// sequence.
func (r scanReader) seqAtTime(t time.Time) (uint64, error) {
	return bisect(r, func(e *journal.Envelope) bool { return !e.Time.After(t) })
}

func (r scanReader) seqOfID(id ulid.ULID) (uint64, error) {
	seq, err := bisect(r, func(e *journal.Envelope) bool { return e.ID.Compare(id) <= 0 })
	if err != nil || seq == 0 {
		return 0, journal.ErrNotFound
	}
	e, err := r.get(seq)
	if err != nil {
		return 0, err
	}
	if e.ID != id {
		return 0, journal.ErrNotFound
	}
	return seq, nil
}

// bisect returns the last sequence whose event satisfies le (a predicate
// true up to some point and false after), 0 when none does.
func bisect(r reader, le func(*journal.Envelope) bool) (uint64, error) {
	first, err := r.first()
	if err != nil || first == 0 {
		return 0, err
	}
	head := r.head()
	var ferr error
	n := int(head - first + 1)
	i := sort.Search(n, func(i int) bool {
		if ferr != nil {
			return true
		}
		e, err := r.get(first + uint64(i))
		if err != nil {
			ferr = err
			return true
		}
		return !le(e)
	})
	if ferr != nil {
		return 0, ferr
	}
	if i == 0 {
		return 0, nil
	}
	return first + uint64(i) - 1, nil
}

func (scanReader) postings(string, uint64, uint64, bool, func(uint64) error) (bool, error) {
	return false, nil
}

func (scanReader) terms(string, func(string) error) (bool, error) { return false, nil }

func (r scanReader) stateAtOrBefore(seq uint64) (*journal.Snapshot, error) {
	return snapshotAtOrBefore(r.s, seq)
}

// snapshotAtOrBefore is the store's snapshot file when it is at or before
// seq and still matches the journal.
func snapshotAtOrBefore(s journal.Store, seq uint64) (*journal.Snapshot, error) {
	sn, err := s.LoadSnapshot()
	if err != nil || sn == nil || sn.Seq > seq || sn.Seq == 0 {
		return nil, nil
	}
	if id := s.Identity().ID; !sn.Journal.IsZero() && sn.Journal != id {
		return nil, nil
	}
	if h, err := s.HashAt(sn.Seq); err != nil || h != sn.Hash {
		return nil, nil
	}
	return sn, nil
}
