package effects

import (
	"sync"
	"time"
)

// Folder folds repeated log lines by key: the first line of a key is
// written at once, then at most one per Every, carrying how many were left
// out since. It tracks at most Max keys (past it the key written longest
// ago is forgotten), so a flood of distinct keys cannot grow it. The zero
// Folder is not usable: set Every and Max. Safe for concurrent use.
//
// Users: wireguard-go's per-peer errors (effects/wireguard), refusals of
// the authorization check (cmd/internal/daemon).
type Folder[K comparable] struct {
	Every time.Duration
	Max   int

	mu sync.Mutex
	m  map[K]*foldEntry
}

type foldEntry struct {
	last       time.Time // of the last line written
	suppressed int
}

// Allow reports whether a line for k may be written at now and, when it
// may, how many lines for k were left out since the last one.
func (f *Folder[K]) Allow(k K, now time.Time) (ok bool, suppressed int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[K]*foldEntry{}
	}
	e := f.m[k]
	if e == nil {
		if len(f.m) >= f.Max {
			f.forgetOldest()
		}
		e = &foldEntry{}
		f.m[k] = e
	} else if now.Sub(e.last) < f.Every {
		e.suppressed++
		return false, 0
	}
	suppressed = e.suppressed
	e.last, e.suppressed = now, 0
	return true, suppressed
}

func (f *Folder[K]) forgetOldest() {
	var oldest K
	var at time.Time
	first := true
	for k, e := range f.m {
		if first || e.last.Before(at) {
			oldest, at, first = k, e.last, false
		}
	}
	delete(f.m, oldest)
}
