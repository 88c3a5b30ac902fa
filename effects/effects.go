// Package effects makes the host match the projected state. Each mechanism
// (WireGuard, bridges, DNS, NAT, HCN) is a Reconciler in a subpackage; the
// Runner hands every committed change to each of them.
//
// Contract of a reconciler: it reads the desired state through a View (never
// keeping references into it), diffs it against what the kernel has, adds
// before it deletes, treats "already exists" and "not found" as success, and
// may be called any number of times with the same state. Reconcilers run
// after the journal commit, outside any journal transaction.
package effects

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/zlayer/overlayd/projections"
)

// MTU of every overlay link: WireGuard devices, bridges and veths.
const MTU = 1420

// RouteProtocol marks the routes the effects install (rtnetlink protocol
// number; 79 is unassigned), so a check finds exactly its own.
const RouteProtocol = 79

// View gives read access to the committed state.
type View interface {
	// Read calls fn with the committed state. fn must not retain the
	// state or anything inside it, and must not block.
	Read(fn func(st *projections.State))
}

// Reconciler converges one mechanism.
type Reconciler interface {
	Name() string
	// Reconcile converges the objects named by changed (keys as
	// projections.Keys returns them); all is set at boot and on periodic
	// checks, when everything must be compared.
	Reconcile(ctx context.Context, view View, changed []string, all bool) error
}

// Runner dispatches changes to reconcilers. Each reconciler has its own
// goroutine and a coalescing queue: changes that arrive while it works are
// handed over together in its next call.
type Runner struct {
	view      View
	log       *slog.Logger
	interval  time.Duration
	workers   []*worker
	observers []Observer
	wg        sync.WaitGroup
	cancel    context.CancelFunc
	// onPass, when set (before Start), is told of every finished pass
	// (metrics).
	onPass func(Pass)
}

// Pass is one finished Reconcile call, as Runner.OnPass reports it.
type Pass struct {
	Reconciler string
	All        bool  // a full pass (boot, periodic check, retry)
	Err        error // what Reconcile returned
	Took       time.Duration
}

// OnPass makes the runner call fn after every pass of every reconciler,
// on that reconciler's goroutine: fn must be quick and safe for
// concurrent use. Call it before Start.
func (r *Runner) OnPass(fn func(Pass)) { r.onPass = fn }

// Reconcilers returns the runner's reconcilers, in order (metrics look for
// the optional interfaces they implement: Repairer, ...).
func (r *Runner) Reconcilers() []Reconciler {
	out := make([]Reconciler, len(r.workers))
	for i, w := range r.workers {
		out[i] = w.r
	}
	return out
}

// Repairer is implemented by reconcilers that count the drift they
// repaired (an object found changed or missing behind the daemon's back
// and put back, a stray one removed), by kind ("nat_table",
// "wireguard_device", ...). The counts only grow.
type Repairer interface {
	Repaired() map[string]uint64
}

// Repaired sums the counts of every Repairer by kind.
func (r *Runner) Repaired() map[string]uint64 {
	out := map[string]uint64{}
	for _, w := range r.workers {
		if rp, ok := w.r.(Repairer); ok {
			for k, n := range rp.Repaired() {
				out[k] += n
			}
		}
	}
	return out
}

// Repairs counts repairs by kind, for a Repairer. The zero value is ready;
// safe for concurrent use.
type Repairs struct {
	mu sync.Mutex
	m  map[string]uint64
}

// Add counts n repairs of kind.
func (rs *Repairs) Add(kind string, n int) {
	if n <= 0 {
		return
	}
	rs.mu.Lock()
	if rs.m == nil {
		rs.m = map[string]uint64{}
	}
	rs.m[kind] += uint64(n)
	rs.mu.Unlock()
}

// Repaired returns a copy of the counts.
func (rs *Repairs) Repaired() map[string]uint64 {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	out := make(map[string]uint64, len(rs.m))
	for k, n := range rs.m {
		out[k] = n
	}
	return out
}

type worker struct {
	r       Reconciler
	mu      sync.Mutex
	changed map[string]struct{}
	all     bool
	kick    chan struct{}
	// queued is the sequence number of the newest change handed to the
	// worker, done the newest one a finished Reconcile call covered.
	queued, done uint64
	passes       uint64        // finished Reconcile calls
	epoch        uint64        // bumped by Rewind: a pass begun before it does not advance done
	busy         bool          // a Reconcile call is running
	doneCh       chan struct{} // closed and replaced after every pass
	// problems are the keys whose last pass failed (KeyErrors), kept until
	// a pass succeeds for them, and under the reconciler's name what the
	// last pass reported beyond them, until a full pass reports nothing.
	problems ProblemSet
	fails    failLog // faillog.go: problems logged by transition
}

// Filter is implemented by reconcilers that can tell which change keys
// concern them; others are handed every change.
type Filter interface {
	Relevant(key string) bool
}

// Observer is implemented by reconcilers that keep an in-memory index of
// decided events (the DNS records) rather than kernel objects. The daemon
// hands them every decided event, in order, while it folds the event into
// the state that View reads (under the same lock), and before the command
// is answered; Observe must be quick and must not call View. Their Filter
// leaves the keys of those events out, so answers do not wait on a pass.
type Observer interface {
	Observe(ev projections.Event)
}

// Resetter is implemented by Observers that must start over when the
// daemon rolls its state back (a journal write failed, so decisions it had
// already handed out were never made durable). Reset is called under the
// same lock as Observe, with the state the effects read from then on.
type Resetter interface {
	Reset(st *projections.State)
}

// Reporter is implemented by reconcilers that know of lasting problems
// that do not fail a pass (a DNS listener that cannot bind, retried at
// every pass): Runner.Problems lists them beside the failures of passes.
type Reporter interface {
	Problems() []Problem
}

// KeyErrors is what a reconciler returns when some objects failed and the
// rest converged: the error of each failed change key. The runner keeps
// them until a later pass succeeds for that key (see Runner.Err).
type KeyErrors map[string]error

func (k KeyErrors) Error() string {
	var parts []string
	for key, err := range k {
		parts = append(parts, key+": "+err.Error())
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

// NewRunner returns a runner over view. interval > 0 adds a periodic full
// reconcile (drift repair).
func NewRunner(view View, log *slog.Logger, interval time.Duration, rs ...Reconciler) *Runner {
	r := &Runner{view: view, log: log, interval: interval}
	for _, rec := range rs {
		r.workers = append(r.workers, &worker{r: rec, changed: map[string]struct{}{}, kick: make(chan struct{}, 1), doneCh: make(chan struct{})})
		if o, ok := rec.(Observer); ok {
			r.observers = append(r.observers, o)
		}
	}
	return r
}

// ReconcileAll asks every reconciler for a pass over the whole state and
// waits until each has finished one (boot uses it before serving). Errors
// are logged by the workers, which retry them.
func (r *Runner) ReconcileAll(ctx context.Context) error { return r.reconcile(ctx, "") }

// ReconcileOne asks the named reconciler for a full pass and waits for it
// (nat_tick uses it to check the NAT table). An unknown name is a no-op.
func (r *Runner) ReconcileOne(ctx context.Context, name string) error { return r.reconcile(ctx, name) }

func (r *Runner) reconcile(ctx context.Context, only string) error {
	gens := make([]uint64, len(r.workers))
	for i, w := range r.workers {
		if only != "" && w.r.Name() != only {
			continue
		}
		w.mu.Lock()
		w.all = true
		// A pass already running may have read the state before this
		// call: wait for the one after it.
		gens[i] = w.passes
		if w.busy {
			gens[i]++
		}
		w.mu.Unlock()
		w.wake()
	}
	for i, w := range r.workers {
		if only != "" && w.r.Name() != only {
			continue
		}
		if err := w.waitUntil(ctx, func() bool { return w.passes > gens[i] }); err != nil {
			return fmt.Errorf("effects: %s did not finish a full pass: %w", w.r.Name(), err)
		}
	}
	return nil
}

// wake kicks the worker's loop without blocking.
func (w *worker) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// waitUntil waits until cond, checked under w.mu after every pass, holds.
func (w *worker) waitUntil(ctx context.Context, cond func() bool) error {
	for {
		w.mu.Lock()
		ok, ch := cond(), w.doneCh
		w.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Start launches the workers.
func (r *Runner) Start(ctx context.Context) {
	ctx, r.cancel = context.WithCancel(ctx)
	for _, w := range r.workers {
		r.wg.Add(1)
		go r.loop(ctx, w)
	}
}

// Notify queues the keys changed by the events up to sequence seq; it
// never blocks. Reconcilers that implement Filter only get their keys.
func (r *Runner) Notify(changed []string, seq uint64) {
	for _, w := range r.workers {
		f, filtered := w.r.(Filter)
		w.mu.Lock()
		n := 0
		for _, k := range changed {
			if !filtered || f.Relevant(k) {
				w.changed[k] = struct{}{}
				n++
			}
		}
		if n > 0 {
			w.queued = seq
		}
		w.mu.Unlock()
		if n > 0 {
			w.wake()
		}
	}
}

// Observe hands evs to every reconciler that is an Observer.
func (r *Runner) Observe(evs []projections.Event) {
	for _, o := range r.observers {
		for _, ev := range evs {
			o.Observe(ev)
		}
	}
}

// Reset hands st to every Observer that is a Resetter. The caller holds the
// lock Observe runs under.
func (r *Runner) Reset(st *projections.State) {
	for _, o := range r.observers {
		if rs, ok := o.(Resetter); ok {
			rs.Reset(st)
		}
	}
}

// Rewind tells the runner that the state went back to sequence seq (the
// decisions after it were never made durable): what the workers had
// applied past seq no longer counts, and every reconciler runs a full pass
// to undo it. Later changes reuse the sequence numbers after seq.
func (r *Runner) Rewind(seq uint64) {
	for _, w := range r.workers {
		w.mu.Lock()
		w.epoch++
		w.queued = min(w.queued, seq)
		w.done = min(w.done, seq)
		w.all = true
		w.mu.Unlock()
		w.wake()
	}
}

// Relevant reports whether any reconciler would act on one of keys.
func (r *Runner) Relevant(keys []string) bool {
	for _, w := range r.workers {
		f, filtered := w.r.(Filter)
		if !filtered && len(keys) > 0 {
			return true
		}
		for _, k := range keys {
			if filtered && f.Relevant(k) {
				return true
			}
		}
	}
	return false
}

// Err returns the error of the last pass that failed for key, if no pass
// has succeeded for it since.
func (r *Runner) Err(key string) error {
	for _, w := range r.workers {
		if err := w.problems.Get(key); err != nil {
			return err
		}
	}
	return nil
}

// Problems lists what is failing now, sorted by key.
func (r *Runner) Problems() []Problem {
	var out []Problem
	for _, w := range r.workers {
		out = append(out, w.problems.List()...)
		if rp, ok := w.r.(Reporter); ok {
			out = append(out, rp.Problems()...)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// beyondKeys is err without its KeyErrors parts (nil if nothing else).
func beyondKeys(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(KeyErrors); ok {
		return nil
	}
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return err
	}
	var rest []error
	for _, e := range j.Unwrap() {
		if e = beyondKeys(e); e != nil {
			rest = append(rest, e)
		}
	}
	return errors.Join(rest...)
}

// WaitApplied waits until every reconciler has finished a pass covering
// every change it was handed up to sequence seq (a pass that failed counts:
// its errors are logged and retried). It returns ctx's error on timeout.
func (r *Runner) WaitApplied(ctx context.Context, seq uint64) error {
	for _, w := range r.workers {
		if err := w.waitUntil(ctx, func() bool { return w.done >= min(seq, w.queued) }); err != nil {
			return fmt.Errorf("effects: %s has not applied event %d yet: %w", w.r.Name(), seq, err)
		}
	}
	return nil
}

// Stop stops the workers, waits for them, then closes every reconciler
// that is an io.Closer (what they made in the kernel stays: it is state,
// adopted by the next start).
func (r *Runner) Stop() {
	if r.cancel != nil {
		r.cancel()
	}
	r.wg.Wait()
	for _, w := range r.workers {
		if c, ok := w.r.(io.Closer); ok {
			if err := c.Close(); err != nil {
				r.log.Warn("closing a reconciler", "reconciler", w.r.Name(), "err", err)
			}
		}
	}
}

func (r *Runner) loop(ctx context.Context, w *worker) {
	defer r.wg.Done()
	var tick <-chan time.Time
	if r.interval > 0 {
		t := time.NewTicker(r.interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		case <-tick:
			w.mu.Lock()
			w.all = true
			w.mu.Unlock()
		}
		w.mu.Lock()
		keys := make([]string, 0, len(w.changed))
		for k := range w.changed {
			keys = append(keys, k)
		}
		all, upTo, epoch := w.all, w.queued, w.epoch
		w.changed, w.all = map[string]struct{}{}, false
		w.busy = len(keys) > 0 || all
		w.mu.Unlock()
		if len(keys) == 0 && !all {
			continue
		}
		t0 := time.Now()
		err := w.r.Reconcile(ctx, r.view, keys, all)
		if r.onPass != nil && ctx.Err() == nil {
			r.onPass(Pass{Reconciler: w.r.Name(), All: all, Err: err, Took: time.Since(t0)})
		}
		var ke KeyErrors
		errors.As(err, &ke)
		name := w.r.Name()
		if all {
			w.problems.Retain(func(k string) bool { return ke[k] != nil || k == name })
		}
		for _, k := range keys {
			if ke[k] == nil {
				w.problems.Set(k, nil)
			}
		}
		for k, e := range ke {
			w.problems.Set(k, e)
		}
		if rest := beyondKeys(err); rest != nil && ctx.Err() == nil {
			w.problems.Set(name, rest)
		} else if all && rest == nil {
			w.problems.Set(name, nil)
		}
		if ctx.Err() == nil {
			w.fails.pass(r.log, name, w.problems.List())
		}
		if err != nil && ctx.Err() == nil {
			w.mu.Lock()
			w.all = true // retry everything at the next tick
			w.mu.Unlock()
		}
		w.mu.Lock()
		w.passes++
		w.busy = false
		if upTo > w.done && epoch == w.epoch {
			w.done = upTo
		}
		close(w.doneCh)
		w.doneCh = make(chan struct{})
		w.mu.Unlock()
		if Failpoint != nil {
			Hit("effects/after-pass/" + w.r.Name())
		}
	}
}
