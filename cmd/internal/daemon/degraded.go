package daemon

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/zlayer/overlayd/cmd/internal/replay"
	"github.com/zlayer/overlayd/effects"
	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/journal"
)

// When the journal cannot take a write (a full disk, an I/O error, a failed
// fsync), the daemon does not stop: stopping would take the data plane down
// with it and cut the orchestrator off. It degrades instead:
//
//   - the commands of the failed batch, and any decided behind it, are
//     answered err naming the cause; nothing of them stays in the state: the
//     sequencer rolls its state back to the last acknowledged event (the
//     snapshot plus the journal's tail), and the effects converge back to it
//     (a veth made for an attach that was never recorded is removed);
//   - reads are served, the data plane keeps forwarding, writes are answered
//     err, and status reports degraded and since when;
//   - every second the journal is reopened and checked (journal.Store.Recover:
//     never "retry fsync and trust it"); once that succeeds, writes are
//     accepted again, with no restart.
//
// The same read-only mode holds when a check of the journal file finds
// damage (the page check runs once in the background after boot, and in
// every journal verify): the store refuses writes, since writing into a
// damaged bbolt file could spread the damage, and recovery is tried less
// and less often (a damaged file does not heal; repair does).

// Recovery attempts while degraded: the first after recoverEvery, then
// backing off to maxRecoverEvery (maxDamagedRecoverEvery when the file is
// damaged: each attempt checks every page).
const (
	recoverEvery           = time.Second
	maxRecoverEvery        = 5 * time.Second
	maxDamagedRecoverEvery = time.Minute
)

type journalWatch struct {
	d      *Daemon
	kick   chan struct{}
	stopCh chan struct{}
	done   chan struct{}

	mu      sync.Mutex
	failing bool // an episode is under way (logged once)
	started bool
}

// newJournalWatch makes the watch; start runs it once the daemon is up.
func newJournalWatch(d *Daemon) *journalWatch {
	return &journalWatch{d: d, kick: make(chan struct{}, 1), stopCh: make(chan struct{}), done: make(chan struct{})}
}

func (w *journalWatch) start() {
	w.mu.Lock()
	w.started = true
	w.mu.Unlock()
	go w.loop()
	if c, ok := w.d.store.(interface{ Check() error }); ok {
		go w.checkFile(c)
	}
}

func (w *journalWatch) stop() {
	w.mu.Lock()
	started := w.started
	w.started = false
	w.mu.Unlock()
	if started {
		close(w.stopCh)
		<-w.done
	}
}

// checkFile runs the journal file's own consistency check once after boot
// (boot reads only the snapshot's tail, to stay fast). Damage it finds
// makes the store read-only; the degraded mode takes it from there.
func (w *journalWatch) checkFile(c interface{ Check() error }) {
	start := time.Now()
	err := c.Check()
	switch {
	case err == nil:
		w.d.log.Debug("journal file checked", "took", time.Since(start).Round(time.Millisecond))
	case errors.Is(err, journal.ErrClosed):
	case !w.d.store.Health().OK():
		w.d.log.Error("the journal file is damaged; refusing writes so that the damage cannot spread (reads and the data plane go on); stop the daemon and run `overlayctl journal repair`", "err", err)
		select {
		case w.kick <- struct{}{}:
		default:
		}
	default:
		w.d.log.Warn("the journal file's check found something to look at", "err", err)
	}
}

// failed records a failed commit and wakes the loop.
func (w *journalWatch) failed(err error) {
	if w == nil {
		return // boot: Open fails with the error
	}
	w.mu.Lock()
	first := !w.failing
	w.failing = true
	w.mu.Unlock()
	if first {
		w.d.log.Error("journal write failed; the daemon is read-only until the journal is writable again (reads and the data plane go on)", "err", err)
	}
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *journalWatch) loop() {
	defer close(w.done)
	t := time.NewTicker(recoverEvery)
	defer t.Stop()
	var next time.Time // of the next recovery attempt
	wait := recoverEvery
	for {
		select {
		case <-w.stopCh:
			return
		case <-w.kick:
		case <-t.C:
		}
		h := w.d.store.Health()
		if h.OK() {
			wait, next = recoverEvery, time.Time{}
			continue
		}
		// Roll the state back first (the pipeline refuses writes while the
		// store is unhealthy, so nothing new can be decided on top of it),
		// then try the store.
		<-w.d.submit(&job{reset: true, cause: journal.Cause{Op: "recover"}})
		select {
		case <-w.stopCh:
			return
		default:
		}
		if next.IsZero() {
			next = time.Now().Add(recoverEvery / 2)
		}
		if time.Now().Before(next) {
			continue
		}
		if err := w.d.store.Recover(); err != nil {
			limit := maxRecoverEvery
			if errors.Is(err, journal.ErrDamaged) {
				limit = maxDamagedRecoverEvery
			}
			wait = min(2*wait, limit)
			next = time.Now().Add(wait)
			w.d.log.Debug("journal still read-only", "err", err, "next_try_in", wait)
			continue
		}
		wait, next = recoverEvery, time.Time{}
		w.mu.Lock()
		w.failing = false
		w.mu.Unlock()
		w.d.log.Info("journal writable again; accepting writes", "read_only_for", time.Since(h.Since).Round(time.Millisecond))
		w.d.sweepKeysAfterRecovery() // keys of setups whose commits failed (keyclean.go)
	}
}

// writable is nil when the pipeline may journal a command, else why not.
func (d *Daemon) writable() error { return readOnly(d.store.Health()) }

// readOnly is why a journal with health h takes no writes (nil: it does).
func readOnly(h journal.Health) error {
	if !h.OK() {
		since := ""
		if !h.Since.IsZero() {
			since = " since " + h.Since.UTC().Format(time.RFC3339)
		}
		return fmt.Errorf("the journal is read-only%s after a failed write (%w); the command was not applied; writes are accepted again once the journal can be written (status lists the problem)", since, h.Err)
	}
	return nil
}

// untaint rolls the live state back to the journal's last acknowledged
// event when it holds decisions that were never made durable (their
// commits failed). It runs on the sequencer goroutine. When the journal
// cannot be read to do it, the error stays (p.taintErr) and every job is
// refused with it, without another try for a second: no answer may come
// from a state that holds a decision the journal does not.
func (p *pipeline) untaint() error {
	if p.taintErr != nil && time.Since(p.taintTried) < time.Second {
		return p.taintErr
	}
	if head, _ := p.d.store.Head(); p.live.Seq == head {
		p.taintErr = nil
		return nil
	}
	if p.barrier != nil {
		p.barrier.Wait() // every commit handed out has resolved (they resolve in order)
		p.barrier = nil  // and none of them may hold an answer back any more
	}
	head, hash := p.d.store.Head()
	if p.live.Seq == head {
		p.taintErr = nil
		return nil
	}
	st, _, err := replay.Load(p.d.store, replay.Options{})
	if err == nil && st.Seq != head {
		err = fmt.Errorf("replay ended at %d, the journal's last acknowledged event is %d", st.Seq, head)
	}
	if err != nil {
		if p.taintErr == nil {
			p.d.log.Error("cannot roll the state back to the journal after a failed write; refusing reads and writes until it can", "err", err)
		}
		p.taintErr, p.taintTried = fmt.Errorf("the state could not be rolled back to the journal after a failed write (%w); reads and writes are refused until it can", err), time.Now()
		return p.taintErr
	}
	p.d.log.Warn("rolled the state back to the last acknowledged event", "from", p.live.Seq, "to", head)
	p.live, p.taintErr = st, nil
	p.batches <- batch{reset: st.Clone(), resetHash: hash, last: head}
	return nil
}

// problems lists what is wrong with the node now (status).
func (d *Daemon) problems() []ipc.Problem {
	var ps []effects.Problem
	if h := d.store.Health(); !h.OK() {
		ps = append(ps, effects.Problem{Key: "journal", Err: fmt.Errorf("read-only after a failed write: %w", h.Err), Since: h.Since})
	}
	if d.runner != nil {
		ps = append(ps, d.runner.Problems()...)
	}
	ps = append(ps, d.probs.List()...)
	ps = append(ps, d.platformProbs.List()...)
	out := make([]ipc.Problem, 0, len(ps))
	for _, p := range ps {
		out = append(out, ipc.Problem{Resource: p.Key, Error: p.Err.Error(), SinceUnixSecs: p.Since.Unix()})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Resource < out[j].Resource })
	return out
}

var errNotDurable = errors.New("not applied: the journal could not make it durable")
