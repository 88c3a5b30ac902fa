package daemon

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/zlayer/overlayd/cmd/internal/replay"
	"github.com/zlayer/overlayd/journal"
	"github.com/zlayer/overlayd/projections"
)

// DefaultKeepStateEvery is how often (in events) the daemon keeps the
// projected state in the journal for `overlayctl state --at`: a query
// then replays at most this many events from the nearest kept state.
const DefaultKeepStateEvery = 50_000

// retainer keeps projected states in the journal (journal.Indexed
// PutState) at intervals: a snapshot that is at least `every` events past
// the last kept state is kept too, and at boot a background pass fills in
// the history before (a journal written before states were kept, or one
// that grew while the daemon ran with keeping off).
type retainer struct {
	d     *Daemon
	ix    journal.Indexed
	every uint64

	mu   sync.Mutex
	last uint64 // sequence of the newest kept state
}

func newRetainer(d *Daemon, every uint64) *retainer {
	ix, ok := d.store.(journal.Indexed)
	if !ok || every == 0 {
		return nil
	}
	return &retainer{d: d, ix: ix, every: every}
}

// snapshotTaken keeps sn when it is far enough past the last kept state.
func (r *retainer) snapshotTaken(sn *journal.Snapshot) {
	if r == nil {
		return
	}
	r.mu.Lock()
	due := sn.Seq >= r.last+r.every
	r.mu.Unlock()
	if !due {
		return
	}
	if err := r.ix.PutState(sn); err != nil {
		if !errors.Is(err, journal.ErrClosed) && !errors.Is(err, journal.ErrReadOnly) {
			r.d.log.Warn("keeping the state for state --at", "seq", sn.Seq, "err", err)
		}
		return
	}
	r.mu.Lock()
	r.last = max(r.last, sn.Seq)
	r.mu.Unlock()
}

// backfill keeps a state every `every` events from the last kept one up to
// the head at boot, replaying the journal in the background. It stops at
// stop, and on the first error (logged: the queries fall back to longer
// replays, nothing else depends on it).
func (r *retainer) backfill(stop <-chan struct{}) {
	if r == nil {
		return
	}
	head, _ := r.d.store.Head()
	// The newest kept state, read here rather than at boot (it is a whole
	// state body): until then a snapshot may be kept a little early.
	if sn, err := r.ix.StateAtOrBefore(head); err == nil && sn != nil {
		r.mu.Lock()
		r.last = max(r.last, sn.Seq)
		r.mu.Unlock()
	}
	r.mu.Lock()
	from := r.last
	r.mu.Unlock()
	if head < from+2*r.every {
		return
	}
	start := time.Now()
	kept, err := r.fill(from, head, stop)
	if err != nil {
		r.d.log.Warn("keeping past states for state --at", "err", err, "kept", kept)
		return
	}
	if kept > 0 {
		r.d.log.Info("kept past states for state --at", "states", kept, "from", from, "to", head, "took", time.Since(start).Round(time.Millisecond))
	}
}

func (r *retainer) fill(from, to uint64, stop <-chan struct{}) (int, error) {
	st := projections.New()
	if ck := journal.CheckpointOf(r.d.store); ck != nil && from < ck.Seq {
		// A compacted journal (CMP): the events up to the checkpoint are
		// in the archives; the replay starts from the checkpoint's state.
		cst, err := replay.CheckpointStateOf(r.d.store)
		if err != nil {
			return 0, err
		}
		st, from = cst, ck.Seq
	} else if from > 0 {
		sn, err := r.ix.StateAtOrBefore(from)
		if err != nil || sn == nil || sn.Seq != from {
			return 0, fmt.Errorf("kept state at %d unreadable: %v", from, err)
		}
		if st, err = projections.DecodeSnapshot(sn.Body); err != nil {
			return 0, fmt.Errorf("kept state at %d: %w", from, err)
		}
		st.Seq = sn.Seq
	}
	kept := 0
	next := from + r.every
	stopped := errors.New("stopped")
	apply := func(e *journal.Envelope) error {
		select {
		case <-stop:
			return stopped
		default:
		}
		if err := replay.Fold(st, e); err != nil {
			return err
		}
		if e.Seq >= next {
			if err := r.ix.PutState(replay.Snapshot(st, e.Hash)); err != nil {
				return err
			}
			kept++
			next = e.Seq + r.every
			r.mu.Lock()
			r.last = max(r.last, e.Seq)
			r.mu.Unlock()
		}
		return nil
	}
	// In windows of one interval, each its own read transaction: a long
	// read would hold up a compaction or a recovery.
	for lo := from + 1; lo <= to; lo += r.every {
		if err := r.ix.Range(lo, min(lo+r.every-1, to), false, apply); err != nil {
			if err == stopped {
				return kept, nil
			}
			return kept, err
		}
	}
	return kept, nil
}
