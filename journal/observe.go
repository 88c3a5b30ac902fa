package journal

import (
	"sync/atomic"
	"time"
)

// CommitInfo describes one commit, for an observer (metrics).
type CommitInfo struct {
	// Took is the write: the transaction and its fsync (BoltStore), the
	// inner store's commit (Faulty).
	Took time.Duration
	// Events is how many events the commit held, written or not.
	Events int
	// Types are the types of the events written, in order; nil when the
	// commit failed.
	Types []string
	// Err is why the commit failed (nil: durable).
	Err error
}

// CommitObserver is implemented by the stores that report their commits:
// BoltStore, MemStore and Faulty.
type CommitObserver interface {
	// ObserveCommits makes the store call fn after each commit attempt,
	// on the goroutine that committed: fn must be quick and must not call
	// the store. nil stops the reports. Safe to call at any time.
	ObserveCommits(fn func(CommitInfo))
}

// commitHook is the observer of a store.
type commitHook struct {
	fn atomic.Pointer[func(CommitInfo)]
}

func (h *commitHook) ObserveCommits(fn func(CommitInfo)) {
	if fn == nil {
		h.fn.Store(nil)
		return
	}
	h.fn.Store(&fn)
}

// observer is the function to report to, or nil.
func (h *commitHook) observer() func(CommitInfo) {
	if p := h.fn.Load(); p != nil {
		return *p
	}
	return nil
}

var (
	_ CommitObserver = (*BoltStore)(nil)
	_ CommitObserver = (*MemStore)(nil)
	_ CommitObserver = (*Faulty)(nil)
)
