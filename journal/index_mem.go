package journal

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
)

// memIndex is a MemStore's index: none, it scans; and its retained
// states.
type memIndex struct {
	indexer func(typ string, ver uint16, payload []byte) []string
	states  map[uint64]*Snapshot
}

// NewMemIndexed returns an empty in-memory journal whose Postings and
// Terms answer with indexer's terms (and the built-in ones), by scanning.
func NewMemIndexed(indexer func(typ string, ver uint16, payload []byte) []string) *MemStore {
	m := NewMem()
	m.ix.indexer = indexer
	return m
}

// raw returns the stored envelopes up to Head.
func (m *MemStore) raw() [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.envs
}

// IndexStatus: a MemStore always answers (by scanning).
func (m *MemStore) IndexStatus() IndexStatus {
	seq, _ := m.Head()
	return IndexStatus{Ready: true, Through: seq}
}

// Get returns event seq, its payload copied.
func (m *MemStore) Get(seq uint64) (*Envelope, error) {
	envs := m.raw()
	if seq == 0 || seq > uint64(len(envs)) {
		return nil, fmt.Errorf("event %d: %w", seq, ErrNotFound)
	}
	e, err := decodeEnvelope(envs[seq-1], false)
	if err != nil {
		return nil, fmt.Errorf("event %d: %w", seq, err)
	}
	e.Payload = append([]byte(nil), e.Payload...)
	return e, nil
}

// Range calls fn for each event in [from, to] (to 0: Head), ascending or
// descending.
func (m *MemStore) Range(from, to uint64, reverse bool, fn func(*Envelope) error) error {
	envs := m.raw()
	from, to, ok := clampRange(from, to, uint64(len(envs)))
	if !ok {
		return nil
	}
	for i := range to - from + 1 {
		seq := from + i
		if reverse {
			seq = to - i
		}
		e, err := decodeEnvelope(envs[seq-1], false)
		if err != nil {
			return fmt.Errorf("event %d: %w", seq, err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// SeqAtTime returns the last event with Time <= t (0 when none).
func (m *MemStore) SeqAtTime(t time.Time) (uint64, error) {
	envs := m.raw()
	ns := t.UnixNano()
	i := sort.Search(len(envs), func(i int) bool {
		et, _ := envelopeTime(envs[i])
		return et > ns
	})
	return uint64(i), nil
}

// SeqOfID returns the sequence of the event with id (ErrNotFound).
func (m *MemStore) SeqOfID(id ulid.ULID) (uint64, error) {
	envs := m.raw()
	i := sort.Search(len(envs), func(i int) bool {
		eid, _ := envelopeID(envs[i])
		return eid.Compare(id) >= 0
	})
	if i < len(envs) {
		if eid, _ := envelopeID(envs[i]); eid == id {
			return uint64(i + 1), nil
		}
	}
	return 0, fmt.Errorf("event %s: %w", id, ErrNotFound)
}

// Postings scans [from, to] for the events indexed under term.
func (m *MemStore) Postings(term string, from, to uint64, reverse bool, fn func(seq uint64) error) error {
	return m.Range(from, to, reverse, func(e *Envelope) error {
		if _, ok := slices.BinarySearch(eventTerms(m.ix.indexer, e.Type, e.Version, e.Cause.Op, e.Payload), term); ok {
			return fn(e.Seq)
		}
		return nil
	})
}

// Terms scans every event for its distinct terms starting with prefix.
func (m *MemStore) Terms(prefix string, fn func(term string) error) error {
	set := map[string]bool{}
	if err := m.Range(0, 0, false, func(e *Envelope) error {
		for _, t := range eventTerms(m.ix.indexer, e.Type, e.Version, e.Cause.Op, e.Payload) {
			if strings.HasPrefix(t, prefix) {
				set[t] = true
			}
		}
		return nil
	}); err != nil {
		return err
	}
	terms := make([]string, 0, len(set))
	for t := range set {
		terms = append(terms, t)
	}
	slices.Sort(terms)
	for _, t := range terms {
		if err := fn(t); err != nil {
			return err
		}
	}
	return nil
}

// PutState keeps a copy of snap as the retained state at snap.Seq.
func (m *MemStore) PutState(snap *Snapshot) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.closed:
		return ErrClosed
	case snap.Seq > uint64(len(m.envs)):
		return fmt.Errorf("%w: retained state at %d, head %d", ErrSnapshotAhead, snap.Seq, len(m.envs))
	}
	if snap.Seq > 0 {
		e, err := decodeEnvelope(m.envs[snap.Seq-1], false)
		if err != nil {
			return err
		}
		if e.Hash != snap.Hash {
			return fmt.Errorf("journal: retained state at %d: %w: its hash is not the event's", snap.Seq, ErrHashMismatch)
		}
	}
	c := *snap
	c.Journal = m.id
	c.Body = append([]byte(nil), snap.Body...)
	if m.ix.states == nil {
		m.ix.states = map[uint64]*Snapshot{}
	}
	m.ix.states[c.Seq] = &c
	return nil
}

// StateAtOrBefore returns the newest retained state with Seq <= seq, or
// nil.
func (m *MemStore) StateAtOrBefore(seq uint64) (*Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var best *Snapshot
	for s, sn := range m.ix.states {
		if s <= seq && (best == nil || s > best.Seq) {
			best = sn
		}
	}
	if best == nil {
		return nil, nil
	}
	c := *best
	c.Body = append([]byte(nil), best.Body...)
	return &c, nil
}
