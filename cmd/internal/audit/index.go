package audit

import (
	"errors"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/zlayer/overlayd/journal"
)

// indexReader reads through a journal's lookups (Get, Range, SeqAtTime:
// O(log n)) and, when it is complete, its secondary index.
type indexReader struct{ s journal.Indexed }

// indexedReader returns a reader over store's lookups; ready says whether
// its secondary index is complete.
func indexedReader(store journal.Store) (r reader, ready bool, ok bool) {
	ix, ok := store.(journal.Indexed)
	if !ok {
		return nil, false, false
	}
	return indexReader{ix}, ix.IndexStatus().Ready, true
}

func (r indexReader) head() uint64 { h, _ := r.s.Head(); return h }

func (r indexReader) first() (uint64, error) {
	var first uint64
	err := r.s.Range(1, 0, false, func(e *journal.Envelope) error { first = e.Seq; return errStop })
	if err != nil && err != errStop {
		return 0, err
	}
	return first, nil
}

func (r indexReader) get(seq uint64) (*journal.Envelope, error) { return r.s.Get(seq) }

func (r indexReader) rng(from, to uint64, reverse bool, fn func(*journal.Envelope) error) error {
	return r.s.Range(from, to, reverse, fn)
}

func (r indexReader) seqAtTime(t time.Time) (uint64, error) { return r.s.SeqAtTime(t) }
func (r indexReader) seqOfID(id ulid.ULID) (uint64, error)  { return r.s.SeqOfID(id) }

func (r indexReader) postings(term string, from, to uint64, reverse bool, fn func(uint64) error) (bool, error) {
	err := r.s.Postings(term, from, to, reverse, fn)
	if errors.Is(err, journal.ErrNoIndex) {
		return false, nil
	}
	return true, err
}

func (r indexReader) terms(prefix string, fn func(string) error) (bool, error) {
	err := r.s.Terms(prefix, fn)
	if errors.Is(err, journal.ErrNoIndex) {
		return false, nil
	}
	return true, err
}

// stateAtOrBefore: the newer of the retained state and the snapshot file,
// each only if it still matches the journal's event at its sequence.
func (r indexReader) stateAtOrBefore(seq uint64) (*journal.Snapshot, error) {
	best, err := snapshotAtOrBefore(r.s, seq)
	if err != nil {
		return nil, err
	}
	ret, err := r.s.StateAtOrBefore(seq)
	if err != nil {
		return best, nil // a damaged retained state: fall back (verify reports it)
	}
	if ret != nil && (best == nil || ret.Seq > best.Seq) {
		if h, err := r.s.HashAt(ret.Seq); err == nil && h == ret.Hash {
			best = ret
		}
	}
	return best, nil
}
