package journal

import (
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"
)

// Faulty answers the index reads of the store it wraps (a BoltStore or a
// MemStore); PutState fails while the wrapper is read-only.

var _ Indexed = (*Faulty)(nil)

func (f *Faulty) indexed() (Indexed, error) {
	if ix, ok := f.inner.(Indexed); ok {
		return ix, nil
	}
	return nil, fmt.Errorf("%w: the wrapped %T has no index", ErrNoIndex, f.inner)
}

func (f *Faulty) IndexStatus() IndexStatus {
	if ix, err := f.indexed(); err == nil {
		return ix.IndexStatus()
	}
	return IndexStatus{}
}

func (f *Faulty) Get(seq uint64) (*Envelope, error) {
	ix, err := f.indexed()
	if err != nil {
		return nil, err
	}
	return ix.Get(seq)
}

func (f *Faulty) Range(from, to uint64, reverse bool, fn func(*Envelope) error) error {
	ix, err := f.indexed()
	if err != nil {
		return err
	}
	return ix.Range(from, to, reverse, fn)
}

func (f *Faulty) SeqAtTime(t time.Time) (uint64, error) {
	ix, err := f.indexed()
	if err != nil {
		return 0, err
	}
	return ix.SeqAtTime(t)
}

func (f *Faulty) SeqOfID(id ulid.ULID) (uint64, error) {
	ix, err := f.indexed()
	if err != nil {
		return 0, err
	}
	return ix.SeqOfID(id)
}

func (f *Faulty) Postings(term string, from, to uint64, reverse bool, fn func(seq uint64) error) error {
	ix, err := f.indexed()
	if err != nil {
		return err
	}
	return ix.Postings(term, from, to, reverse, fn)
}

func (f *Faulty) Terms(prefix string, fn func(term string) error) error {
	ix, err := f.indexed()
	if err != nil {
		return err
	}
	return ix.Terms(prefix, fn)
}

func (f *Faulty) PutState(snap *Snapshot) error {
	if h := f.Health(); !h.OK() {
		return h.Err
	}
	ix, err := f.indexed()
	if err != nil {
		return err
	}
	return ix.PutState(snap)
}

func (f *Faulty) StateAtOrBefore(seq uint64) (*Snapshot, error) {
	ix, err := f.indexed()
	if err != nil {
		return nil, err
	}
	return ix.StateAtOrBefore(seq)
}
