package journal

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// Faulty wraps a Store and fails its commits on demand, for unit tests of
// what a caller does when the journal stops taking writes (the disk fills
// up, an fsync fails). It follows the Store contract exactly: a failed
// commit fails its Append and every Append queued behind it with an error
// wrapping ErrReadOnly and the injected error; nothing of them reaches the
// inner store; Head stays where it was; the store is read-only (Health)
// until Recover succeeds.
//
// Appends are committed one at a time, in order, by a goroutine of the
// wrapper: each waits SetDelay's delay first, so a failing commit can be
// kept pending while later Appends queue behind it (as the daemon appends
// without waiting). Recover counts as a write attempt: it consumes an
// injected failure like a commit does.
type Faulty struct {
	inner Store

	queue  chan fitem
	done   chan struct{}
	sendMu sync.RWMutex

	mu       sync.Mutex
	failNext int   // the next failNext write attempts fail with failErr
	failErr  error // (FailNext)
	broken   error // every write attempt fails with it until Heal (Break)
	delay    time.Duration
	failed   error // wraps ErrReadOnly; nil: writable
	since    time.Time
	epoch    uint64
	closing  bool
	commits  int // commit attempts, failed or not

	commitHook // ObserveCommits (observe.go): what the wrapper commits, injected failures included
}

var _ Store = (*Faulty)(nil)

type fitem struct {
	recs   []Record
	epoch  uint64
	commit *Commit
}

// NewFaulty wraps inner. The wrapper owns inner from now on: Close closes
// it.
func NewFaulty(inner Store) *Faulty {
	f := &Faulty{inner: inner, queue: make(chan fitem, 1024), done: make(chan struct{})}
	go f.writer()
	return f
}

// Inner returns the wrapped store (to look at what reached it).
func (f *Faulty) Inner() Store { return f.inner }

// FailNext makes the next n write attempts (commits, and Recover calls)
// fail with err. FailNext(1, err) is a transient fault: one commit fails,
// the next Recover succeeds.
func (f *Faulty) FailNext(n int, err error) {
	f.mu.Lock()
	f.failNext, f.failErr = n, err
	f.mu.Unlock()
}

// Break makes every write attempt fail with err until Heal: a disk that
// stays full. Recover fails until then.
func (f *Faulty) Break(err error) {
	f.mu.Lock()
	f.broken = err
	f.mu.Unlock()
}

// Heal removes every injected fault: the next Recover succeeds (if the
// inner store's does).
func (f *Faulty) Heal() {
	f.mu.Lock()
	f.broken, f.failNext, f.failErr = nil, 0, nil
	f.mu.Unlock()
}

// SetDelay makes each commit wait d before it is attempted.
func (f *Faulty) SetDelay(d time.Duration) {
	f.mu.Lock()
	f.delay = d
	f.mu.Unlock()
}

// Commits returns the number of commits attempted so far.
func (f *Faulty) Commits() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.commits
}

// injected returns the error of this write attempt, if one is injected,
// and consumes it. Callers hold f.mu.
func (f *Faulty) injected() error {
	if f.broken != nil {
		return f.broken
	}
	if f.failNext > 0 {
		f.failNext--
		return f.failErr
	}
	return nil
}

func (f *Faulty) Append(recs []Record) *Commit {
	c := newCommit()
	f.sendMu.RLock()
	defer f.sendMu.RUnlock()
	f.mu.Lock()
	err, epoch := f.failed, f.epoch
	if f.closing {
		err = ErrClosed
	}
	f.mu.Unlock()
	if err != nil {
		c.resolve(nil, err)
		return c
	}
	f.queue <- fitem{recs: recs, epoch: epoch, commit: c}
	return c
}

func (f *Faulty) writer() {
	defer close(f.done)
	for it := range f.queue {
		f.mu.Lock()
		delay := f.delay
		f.mu.Unlock()
		if delay > 0 {
			time.Sleep(delay)
		}
		f.mu.Lock()
		switch {
		case it.epoch != f.epoch:
			err := f.failed
			if err == nil {
				err = fmt.Errorf("%w: an earlier commit failed after this append was queued", ErrReadOnly)
			}
			f.mu.Unlock()
			it.commit.resolve(nil, err)
			continue
		case f.failed != nil:
			err := f.failed
			f.mu.Unlock()
			it.commit.resolve(nil, err)
			continue
		}
		f.commits++
		inj := f.injected()
		if inj != nil {
			err := f.failLocked(fmt.Errorf("commit (injected): %w", inj))
			f.mu.Unlock()
			f.report(it.recs, 0, nil, err)
			it.commit.resolve(nil, err)
			continue
		}
		f.mu.Unlock()
		t0 := time.Now()
		envs, err := f.inner.Append(it.recs).Wait()
		if err != nil && !errors.Is(err, ErrClosed) {
			f.mu.Lock()
			err = f.failLocked(err)
			f.mu.Unlock()
		}
		f.report(it.recs, time.Since(t0), envs, err)
		it.commit.resolve(envs, err)
	}
}

// report tells the observer of one commit.
func (f *Faulty) report(recs []Record, took time.Duration, envs []Envelope, err error) {
	fn := f.observer()
	if fn == nil {
		return
	}
	ci := CommitInfo{Took: took, Events: len(recs), Err: err}
	if err == nil {
		ci.Types = make([]string, len(envs))
		for i, e := range envs {
			ci.Types[i] = e.Type
		}
	}
	fn(ci)
}

// failLocked makes the wrapper read-only with cause and returns the error
// its Appends fail with.
func (f *Faulty) failLocked(cause error) error {
	if f.failed == nil {
		f.since = time.Now()
		f.epoch++
		if errors.Is(cause, ErrReadOnly) {
			f.failed = cause
		} else {
			f.failed = fmt.Errorf("%w: %w", ErrReadOnly, cause)
		}
	}
	return f.failed
}

func (f *Faulty) Health() Health {
	f.mu.Lock()
	failed, since := f.failed, f.since
	f.mu.Unlock()
	if failed != nil {
		return Health{Err: failed, Since: since}
	}
	return f.inner.Health()
}

// Recover fails while an injected fault persists (Break, or FailNext
// attempts left), then recovers the inner store.
func (f *Faulty) Recover() error {
	f.mu.Lock()
	if f.closing {
		f.mu.Unlock()
		return ErrClosed
	}
	if f.failed == nil {
		f.mu.Unlock()
		return f.inner.Recover()
	}
	if inj := f.injected(); inj != nil {
		failed := f.failed
		f.mu.Unlock()
		return fmt.Errorf("journal: recover: the medium still fails writes: %w (read-only since: %w)", inj, failed)
	}
	f.mu.Unlock()
	if err := f.inner.Recover(); err != nil {
		return err
	}
	f.mu.Lock()
	f.failed = nil
	f.mu.Unlock()
	return nil
}

func (f *Faulty) Head() (uint64, [32]byte) { return f.inner.Head() }
func (f *Faulty) Iterate(after uint64, verify bool, fn func(*Envelope) error) error {
	return f.inner.Iterate(after, verify, fn)
}
func (f *Faulty) HashAt(seq uint64) ([32]byte, error) { return f.inner.HashAt(seq) }
func (f *Faulty) SaveSnapshot(sn *Snapshot) error     { return f.inner.SaveSnapshot(sn) }
func (f *Faulty) LoadSnapshot() (*Snapshot, error)    { return f.inner.LoadSnapshot() }
func (f *Faulty) Verify() (*Report, error)            { return f.inner.Verify() }
func (f *Faulty) Identity() Identity                  { return f.inner.Identity() }

// Close waits for queued commits, then closes the inner store.
func (f *Faulty) Close() error {
	f.sendMu.Lock()
	f.mu.Lock()
	already := f.closing
	f.closing = true
	f.mu.Unlock()
	if !already {
		close(f.queue)
	}
	f.sendMu.Unlock()
	<-f.done
	if already {
		return nil
	}
	return f.inner.Close()
}
