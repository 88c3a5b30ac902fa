package daemon

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
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
// The same read-only mode holds, without recovery, while the background
// check of the journal file has found damage: writing into a damaged bbolt
// file could spread it.

// recoverEvery is the period of recovery attempts while degraded.
const recoverEvery = time.Second

type journalWatch struct {
	d       *Daemon
	kick    chan struct{}
	stopCh  chan struct{}
	done    chan struct{}
	damaged atomic.Pointer[effects.Problem] // set by the file check

	mu      sync.Mutex
	failing bool // an episode is under way (logged once)
}

func startJournalWatch(d *Daemon) *journalWatch {
	w := &journalWatch{d: d, kick: make(chan struct{}, 1), stopCh: make(chan struct{}), done: make(chan struct{})}
	go w.loop()
	if c, ok := d.store.(interface{ Check() error }); ok {
		go w.checkFile(c)
	}
	return w
}

func (w *journalWatch) stop() {
	close(w.stopCh)
	<-w.done
}

// checkFile runs the journal file's own consistency check once after boot
// (boot itself reads only the snapshot's tail, to stay fast).
func (w *journalWatch) checkFile(c interface{ Check() error }) {
	start := time.Now()
	err := c.Check()
	if err == nil {
		w.d.log.Debug("journal file checked", "took", time.Since(start).Round(time.Millisecond))
		return
	}
	w.damaged.Store(&effects.Problem{Key: "journal", Since: time.Now(),
		Err: fmt.Errorf("the journal file is damaged (%w); writes are refused so that the damage cannot spread, reads and the data plane go on; stop the daemon and run `overlayctl journal repair`", err)})
	w.d.log.Error("the journal file is damaged; refusing writes", "err", err)
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
	var last time.Time
	for {
		select {
		case <-w.stopCh:
			return
		case <-w.kick:
		case <-t.C:
		}
		h := w.d.store.Health()
		if h.OK() {
			continue
		}
		// Roll the state back first (the pipeline refuses writes while the
		// store is unhealthy, so nothing new can be decided on top of it),
		// then try the store.
		if r := <-w.d.submit(&job{reset: true, cause: journal.Cause{Op: "recover"}}); isErr(r) {
			continue // shutting down
		}
		if time.Since(last) < recoverEvery/2 {
			continue
		}
		last = time.Now()
		if err := w.d.store.Recover(); err != nil {
			w.d.log.Debug("journal still read-only", "err", err)
			continue
		}
		w.mu.Lock()
		w.failing = false
		w.mu.Unlock()
		w.d.log.Info("journal writable again; accepting writes", "read_only_for", time.Since(h.Since).Round(time.Millisecond))
	}
}

// writable is nil when the pipeline may journal a command, else why not.
func (d *Daemon) writable() error {
	if h := d.store.Health(); !h.OK() {
		since := ""
		if !h.Since.IsZero() {
			since = " since " + h.Since.UTC().Format(time.RFC3339)
		}
		return fmt.Errorf("the journal is read-only%s after a failed write (%w); the command was not applied; writes are accepted again once the journal can be written (status lists the problem)", since, h.Err)
	}
	if d.jw != nil {
		if p := d.jw.damaged.Load(); p != nil {
			return p.Err
		}
	}
	return nil
}

// untaint rolls the live state back to the journal's last acknowledged
// event when it holds decisions that were never made durable (their
// commits failed). It runs on the sequencer goroutine.
func (p *pipeline) untaint() {
	if head, _ := p.d.store.Head(); p.live.Seq == head {
		return
	}
	if p.barrier != nil {
		p.barrier.Wait() // every commit handed out has resolved (they resolve in order)
	}
	head, hash := p.d.store.Head()
	if p.live.Seq == head {
		p.barrier = nil
		return
	}
	st, _, err := replay.Load(p.d.store, replay.Options{})
	if err == nil && st.Seq != head {
		err = fmt.Errorf("replay ended at %d, the journal's last acknowledged event is %d", st.Seq, head)
	}
	if err != nil {
		// Keep refusing writes; the next tick tries again.
		p.d.log.Error("cannot roll the state back to the journal; reads may show decisions that were not made durable", "err", err)
		return
	}
	p.d.log.Warn("rolled the state back to the last acknowledged event", "from", p.live.Seq, "to", head)
	p.live, p.barrier = st, nil
	p.batches <- batch{reset: st.Clone(), resetHash: hash, last: head}
}

// problems lists what is wrong with the node now (status).
func (d *Daemon) problems() []ipc.Problem {
	var ps []effects.Problem
	if h := d.store.Health(); !h.OK() {
		ps = append(ps, effects.Problem{Key: "journal", Err: fmt.Errorf("read-only after a failed write: %w", h.Err), Since: h.Since})
	}
	if d.jw != nil {
		if p := d.jw.damaged.Load(); p != nil {
			ps = append(ps, *p)
		}
	}
	if d.runner != nil {
		ps = append(ps, d.runner.Problems()...)
	}
	ps = append(ps, d.probs.list()...)
	out := make([]ipc.Problem, 0, len(ps))
	for _, p := range ps {
		out = append(out, ipc.Problem{Resource: p.Key, Error: p.Err.Error(), SinceUnixSecs: p.Since.Unix()})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Resource < out[j].Resource })
	return out
}

// problems are the daemon's own lasting problems (the socket), by key.
type problems struct {
	mu sync.Mutex
	m  map[string]effects.Problem
}

func (p *problems) set(key string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		delete(p.m, key)
		return
	}
	if p.m == nil {
		p.m = map[string]effects.Problem{}
	}
	since := time.Now()
	if old, ok := p.m[key]; ok {
		since = old.Since
	}
	p.m[key] = effects.Problem{Key: key, Err: err, Since: since}
}

func (p *problems) list() []effects.Problem {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]effects.Problem, 0, len(p.m))
	for _, v := range p.m {
		out = append(out, v)
	}
	return out
}

var errNotDurable = errors.New("not applied: the journal could not make it durable")
