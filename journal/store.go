package journal

import (
	"errors"
	"fmt"
	"sync"
)

// Store is the journal. Implementations: BoltStore (durable), MemStore
// (tests) and Faulty (a wrapper that injects write failures, for tests).
//
// The failure contract, the same for all of them: a commit that fails
// fails its batch and every Append queued behind it, with an error that
// wraps ErrReadOnly and the cause; the store is then read-only (Health)
// and later Appends fail at once, until Recover succeeds. Nothing of a
// failed batch is ever read back: Head stays at the last acknowledged
// event, and Iterate, HashAt and Verify never return an event past it. An
// Append queued before a failure fails even when Recover has succeeded by
// the time its turn comes: it was decided against a state that included
// the failed batch.
type Store interface {
	// Append queues recs to be committed atomically after everything
	// appended before. It does not block on the disk; the Commit resolves
	// once the records are durable (or failed).
	Append(recs []Record) *Commit
	// Head is the last acknowledged sequence number and hash (0 when empty).
	Head() (uint64, [32]byte)
	// Iterate calls fn for each acknowledged event with Seq > after, in
	// order. With verify set, each envelope's hash and link are checked
	// first, and events missing up to Head are an error.
	Iterate(after uint64, verify bool, fn func(*Envelope) error) error
	// HashAt returns the hash of acknowledged event seq (ErrNotFound past
	// Head).
	HashAt(seq uint64) ([32]byte, error)
	// SaveSnapshot stores snap as the latest snapshot, stamped with the
	// journal's id (Snapshot.Journal). A snapshot past Head is refused
	// with ErrSnapshotAhead.
	SaveSnapshot(snap *Snapshot) error
	// LoadSnapshot returns the latest snapshot, or nil when there is none.
	LoadSnapshot() (*Snapshot, error)
	// Verify checks the whole chain up to Head (and, for BoltStore, the
	// file's pages) and reports every problem found.
	Verify() (*Report, error)
	// Identity is the journal's id and how it was opened.
	Identity() Identity
	// Health says whether writes are accepted, and if not, why and since
	// when.
	Health() Health
	// Recover makes a read-only store writable again: it reopens the file,
	// checks it, and removes any event past the last acknowledged one (a
	// commit that failed may still have reached the disk; it was answered
	// as failed and must not come back). It fails, and the store stays
	// read-only, when the check fails or the cause persists. A no-op on a
	// healthy store.
	Recover() error
	// Close waits for queued commits and releases the store; later calls
	// fail with ErrClosed.
	Close() error
}

// Commit is the outcome of one Append.
type Commit struct {
	done chan struct{}
	envs []Envelope
	err  error
}

func newCommit() *Commit { return &Commit{done: make(chan struct{})} }

func (c *Commit) resolve(envs []Envelope, err error) {
	c.envs, c.err = envs, err
	close(c.done)
}

// Done is closed when the commit is resolved.
func (c *Commit) Done() <-chan struct{} { return c.done }

// Wait blocks until the records are durable and returns their envelopes.
func (c *Commit) Wait() ([]Envelope, error) {
	<-c.done
	return c.envs, c.err
}

// Errors.
var (
	ErrClosed   = errors.New("journal: closed")
	ErrLocked   = errors.New("journal: locked by another process")
	ErrNotFound = errors.New("journal: event not found")
)

// Snapshot is a projection snapshot at sequence Seq.
type Snapshot struct {
	Journal ID // the journal it was taken from (zero: written before ids)
	Schema  uint32
	Seq     uint64
	Hash    [32]byte // hash of the event at Seq
	Body    []byte
}

// MemStore is an in-memory Store for tests. It is not durable.
type MemStore struct {
	id     ID
	mu     sync.Mutex
	envs   [][]byte
	snap   *Snapshot
	ids    idSource
	closed bool
	ix     memIndex // index_mem.go

	commitHook // ObserveCommits (observe.go)
}

var _ Store = (*MemStore)(nil)

// NewMem returns an empty in-memory journal.
func NewMem() *MemStore { return &MemStore{id: NewID()} }

func (m *MemStore) Identity() Identity {
	m.mu.Lock()
	defer m.mu.Unlock()
	return Identity{ID: m.id, Fresh: len(m.envs) == 0}
}

// Health: a MemStore never fails a write.
func (m *MemStore) Health() Health { return Health{} }

// Recover is a no-op: a MemStore never fails a write.
func (m *MemStore) Recover() error { return nil }

func (m *MemStore) Append(recs []Record) *Commit {
	c := newCommit()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		c.resolve(nil, ErrClosed)
		return c
	}
	seq, prev := m.headLocked()
	envs := make([]Envelope, len(recs))
	now := m.ids.now()
	for i, r := range recs {
		seq++
		e := &envs[i]
		*e = Envelope{ID: m.ids.next(now), Seq: seq, Time: now, Type: r.Type, Version: r.Version,
			Ignorable: r.Ignorable, Cause: r.Cause, Payload: append([]byte(nil), r.Payload...), PrevHash: prev}
		m.envs = append(m.envs, e.encode(nil))
		prev = e.Hash
	}
	if fn := m.observer(); fn != nil {
		types := make([]string, len(recs))
		for i, r := range recs {
			types[i] = r.Type
		}
		fn(CommitInfo{Events: len(recs), Types: types})
	}
	c.resolve(envs, nil)
	return c
}

func (m *MemStore) headLocked() (uint64, [32]byte) {
	if len(m.envs) == 0 {
		return 0, [32]byte{}
	}
	e, _ := decodeEnvelope(m.envs[len(m.envs)-1], false)
	return e.Seq, e.Hash
}

func (m *MemStore) Head() (uint64, [32]byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.headLocked()
}

func (m *MemStore) Iterate(after uint64, verify bool, fn func(*Envelope) error) error {
	m.mu.Lock()
	envs := m.envs
	m.mu.Unlock()
	var prev [32]byte
	if after > 0 && int(after) <= len(envs) {
		e, err := decodeEnvelope(envs[after-1], false)
		if err != nil {
			return err
		}
		prev = e.Hash
	}
	for i := int(after); i < len(envs); i++ {
		var e Envelope
		if err := decodeInto(&e, envs[i], verify); err != nil {
			return fmt.Errorf("event %d: %w", i+1, err)
		}
		if verify && e.PrevHash != prev {
			return fmt.Errorf("event %d: %w: link to previous event broken", e.Seq, ErrHashMismatch)
		}
		prev = e.Hash
		if err := fn(&e); err != nil {
			return err
		}
	}
	return nil
}

func (m *MemStore) HashAt(seq uint64) ([32]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if seq == 0 || int(seq) > len(m.envs) {
		return [32]byte{}, ErrNotFound
	}
	e, err := decodeEnvelope(m.envs[seq-1], false)
	if err != nil {
		return [32]byte{}, err
	}
	return e.Hash, nil
}

// SaveSnapshot keeps a copy of s, stamped with the store's id; one past
// Head is refused (ErrSnapshotAhead).
func (m *MemStore) SaveSnapshot(s *Snapshot) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if s.Seq > uint64(len(m.envs)) {
		return fmt.Errorf("%w: snapshot at %d, head %d", ErrSnapshotAhead, s.Seq, len(m.envs))
	}
	c := *s
	c.Journal = m.id
	c.Body = append([]byte(nil), s.Body...)
	m.snap = &c
	return nil
}

func (m *MemStore) LoadSnapshot() (*Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.snap == nil {
		return nil, nil
	}
	c := *m.snap
	c.Body = append([]byte(nil), m.snap.Body...)
	return &c, nil
}

func (m *MemStore) Verify() (*Report, error) {
	m.mu.Lock()
	raw := append([][]byte(nil), m.envs...)
	m.mu.Unlock()
	v := newVerifier()
	for i, b := range raw {
		v.check(uint64(i+1), b)
	}
	return v.report(), nil
}

// Tamper flips one byte of stored event seq; for tests of Verify.
func (m *MemStore) Tamper(seq uint64, offset int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := append([]byte(nil), m.envs[seq-1]...)
	b[offset%len(b)] ^= 0x01
	m.envs[seq-1] = b
}

func (m *MemStore) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}
