package journal

import "fmt"

// Compact compacts the wrapped store (which must be able to: BoltStore).
// It counts as a write attempt: an injected failure (FailNext, Break)
// fails it before anything is written, as a disk that is full fails the
// archive's first write, and the store stays as it was; it does not make
// the wrapper read-only (a compaction that fails leaves the journal
// writable). A read-only wrapper refuses it.
func (f *Faulty) Compact(through uint64, state CheckpointState) (*CompactResult, error) {
	c, ok := f.inner.(interface {
		Compact(uint64, CheckpointState) (*CompactResult, error)
	})
	if !ok {
		return nil, fmt.Errorf("journal: compact: a %T cannot be compacted", f.inner)
	}
	f.mu.Lock()
	err := f.failed
	switch {
	case err != nil:
	case f.broken != nil:
		err = f.broken
	case f.failNext > 0:
		f.failNext--
		err = f.failErr
	}
	f.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("journal: compact: %w (the journal is unchanged)", err)
	}
	return c.Compact(through, state)
}

// Checkpoint is the wrapped store's checkpoint.
func (f *Faulty) Checkpoint() *Checkpoint { return CheckpointOf(f.inner) }
