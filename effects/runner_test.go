package effects

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/zlayer/overlayd/projections"
)

type view struct {
	mu sync.Mutex
	st *projections.State
}

func (v *view) Read(fn func(st *projections.State)) {
	v.mu.Lock()
	defer v.mu.Unlock()
	fn(v.st)
}

// scripted fails the keys it is told to, and can hold a pass.
type scripted struct {
	mu      sync.Mutex
	fail    map[string]error
	other   error
	hold    chan struct{} // when set, a pass waits on it
	started chan struct{} // when set, told of every pass that begins
	passes  int
}

func (s *scripted) Name() string { return "scripted" }

func (s *scripted) Reconcile(_ context.Context, _ View, changed []string, all bool) error {
	s.mu.Lock()
	hold, started := s.hold, s.started
	s.mu.Unlock()
	if started != nil {
		started <- struct{}{}
	}
	if hold != nil {
		<-hold
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.passes++
	ke := KeyErrors{}
	for k, err := range s.fail {
		if all || contains(changed, k) {
			ke[k] = err
		}
	}
	var errs []error
	if len(ke) > 0 {
		errs = append(errs, ke)
	}
	if s.other != nil && all {
		errs = append(errs, s.other)
	}
	return errors.Join(errs...)
}

func contains(l []string, k string) bool {
	for _, x := range l {
		if x == k {
			return true
		}
	}
	return false
}

func newRunner(t *testing.T, rs ...Reconciler) *Runner {
	r := NewRunner(&view{st: projections.New()}, slog.New(slog.DiscardHandler), 0, rs...)
	r.Start(context.Background())
	t.Cleanup(r.Stop)
	return r
}

func waitApplied(t *testing.T, r *Runner, seq uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.WaitApplied(ctx, seq); err != nil {
		t.Fatal(err)
	}
}

// A failing key is a problem from its first failure on (the since time
// stays) until a pass succeeds for it; a failure that belongs to no key is
// one under the reconciler's name until a full pass succeeds.
func TestProblemsLastUntilFixed(t *testing.T) {
	s := &scripted{fail: map[string]error{"global": errors.New("port 51820 taken")}, other: errors.New("netlink: too many open files")}
	r := newRunner(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	ps := r.Problems()
	if len(ps) != 2 || ps[0].Key != "global" || ps[1].Key != "scripted" {
		t.Fatalf("problems %+v", ps)
	}
	since := ps[0].Since
	if err := r.Err("global"); err == nil || err.Error() != "port 51820 taken" {
		t.Fatalf("Err(global) = %v", err)
	}
	r.Notify([]string{"global"}, 1)
	waitApplied(t, r, 1)
	if ps := r.Problems(); ps[0].Since != since {
		t.Fatalf("since moved from %v to %v while it kept failing", since, ps[0].Since)
	}
	s.mu.Lock()
	delete(s.fail, "global")
	s.mu.Unlock()
	r.Notify([]string{"global"}, 2) // an incremental pass fixes the key, not the other failure
	waitApplied(t, r, 2)
	if ps := r.Problems(); len(ps) != 1 || ps[0].Key != "scripted" {
		t.Fatalf("after the key was fixed: %+v", ps)
	}
	s.mu.Lock()
	s.other = nil
	s.mu.Unlock()
	if err := r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	if ps := r.Problems(); len(ps) != 0 {
		t.Fatalf("after a clean full pass: %+v", ps)
	}
}

// After Rewind, a pass that started before it does not count for the
// sequence numbers that are handed out again, and a full pass follows.
func TestRewindDoesNotCountStalePasses(t *testing.T) {
	s := &scripted{hold: make(chan struct{}), started: make(chan struct{}, 8)}
	r := newRunner(t, s)
	r.Notify([]string{"a"}, 10) // a pass for 1..10 starts and blocks
	<-s.started
	r.Rewind(5) // 6..10 were never durable
	r.Notify([]string{"b"}, 6)
	s.mu.Lock()
	hold := s.hold
	s.hold = nil
	s.mu.Unlock()
	close(hold) // the stale pass ends; it covered "10", which must not count for the new 6
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.WaitApplied(ctx, 6); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.passes < 2 {
		t.Fatalf("WaitApplied(6) returned after %d pass(es): the stale pass was counted", s.passes)
	}
}
