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
	"log/slog"
	"sync"
	"time"

	"github.com/zlayer/overlayd/projections"
)

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
	view     View
	log      *slog.Logger
	interval time.Duration
	workers  []*worker
	wg       sync.WaitGroup
	cancel   context.CancelFunc
}

type worker struct {
	r       Reconciler
	mu      sync.Mutex
	changed map[string]struct{}
	all     bool
	kick    chan struct{}
}

// NewRunner returns a runner over view. interval > 0 adds a periodic full
// reconcile (drift repair).
func NewRunner(view View, log *slog.Logger, interval time.Duration, rs ...Reconciler) *Runner {
	r := &Runner{view: view, log: log, interval: interval}
	for _, rec := range rs {
		r.workers = append(r.workers, &worker{r: rec, changed: map[string]struct{}{}, kick: make(chan struct{}, 1)})
	}
	return r
}

// ReconcileAll runs every reconciler once over the whole state, in order,
// and returns the errors (boot uses it before serving).
func (r *Runner) ReconcileAll(ctx context.Context) []error {
	var errs []error
	for _, w := range r.workers {
		if err := w.r.Reconcile(ctx, r.view, nil, true); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// Start launches the workers.
func (r *Runner) Start(ctx context.Context) {
	ctx, r.cancel = context.WithCancel(ctx)
	for _, w := range r.workers {
		r.wg.Add(1)
		go r.loop(ctx, w)
	}
}

// Notify queues changed keys for every reconciler; it never blocks.
func (r *Runner) Notify(changed []string) {
	if len(changed) == 0 {
		return
	}
	for _, w := range r.workers {
		w.mu.Lock()
		for _, k := range changed {
			w.changed[k] = struct{}{}
		}
		w.mu.Unlock()
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

// Stop stops the workers and waits for them.
func (r *Runner) Stop() {
	if r.cancel != nil {
		r.cancel()
	}
	r.wg.Wait()
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
		all := w.all
		w.changed, w.all = map[string]struct{}{}, false
		w.mu.Unlock()
		if err := w.r.Reconcile(ctx, r.view, keys, all); err != nil && ctx.Err() == nil {
			r.log.Warn("reconcile failed; will retry", "reconciler", w.r.Name(), "err", err)
		}
	}
}
