package ipc

import (
	"sync"
	"sync/atomic"
	"time"
)

// burstRemind is how often a burst that goes on is logged again.
const burstRemind = time.Minute

// burst counts a run of like events (failed accepts, refused connections)
// so that a run is logged once, with its count, instead of once per event.
type burst struct {
	active atomic.Bool // fast path of end: no burst open
	mu     sync.Mutex
	n      uint64
	start  time.Time
	logged time.Time
}

// hit records one event. It reports whether to log it (the first of a
// burst, then once per burstRemind while it lasts), how many events the
// burst has had, and since when.
func (b *burst) hit(now time.Time) (log bool, n uint64, since time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.n == 0 {
		b.start = now
		b.active.Store(true)
	}
	b.n++
	if b.n == 1 || now.Sub(b.logged) >= burstRemind {
		b.logged = now
		return true, b.n, b.start
	}
	return false, b.n, b.start
}

// end closes the burst; ok is false when none was open.
func (b *burst) end(now time.Time) (n uint64, lasted time.Duration, ok bool) {
	if !b.active.Load() {
		return 0, 0, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.n == 0 {
		return 0, 0, false
	}
	n, lasted = b.n, now.Sub(b.start)
	b.n = 0
	b.active.Store(false)
	return n, lasted, true
}
