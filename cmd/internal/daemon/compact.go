package daemon

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/zlayer/overlayd/cmd/internal/replay"
	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/journal"
)

// Online compaction (journal_compact) and automatic retention
// (Config.RetainEvents). The journal does the work
// (journal.BoltStore.Compact): it reads the events to archive while
// commands go on, then holds the commits while it rewrites and swaps the
// file; the sequencer keeps deciding meanwhile and its appends wait in the
// journal's queue, so nothing acknowledged is lost and nothing is refused.
// A compaction that fails leaves the journal as it was and the daemon
// serving.

// errCompacting refuses a compaction while another one runs.
var errCompacting = errors.New("a compaction is already running")

// compactGate lets one compaction run at a time.
type compactGate struct{ running atomic.Bool }

// compact runs one compaction with opt, unless one is running.
func (d *Daemon) compact(opt replay.CompactOptions) (*journal.CompactResult, error) {
	c, ok := d.store.(replay.Compactable)
	if !ok {
		return nil, fmt.Errorf("this daemon's journal (%T) cannot be compacted", d.store)
	}
	if !d.compactGate.running.CompareAndSwap(false, true) {
		return nil, errCompacting
	}
	defer d.compactGate.running.Store(false)
	return replay.Compact(c, opt)
}

// journalCompact answers journal_compact.
func (d *Daemon) journalCompact(r ipc.JournalCompact) ipc.Response {
	var opt replay.CompactOptions
	switch {
	case r.BeforeSeq != nil && r.BeforeTime != nil:
		return ipc.Err{Message: "journal_compact: give before_seq or before_time, not both"}
	case r.BeforeSeq != nil:
		if *r.BeforeSeq == 0 {
			return ipc.Err{Message: "journal_compact: before_seq: 0 is before every event"}
		}
		opt.BeforeSeq = *r.BeforeSeq
	case r.BeforeTime != nil:
		t, err := time.Parse(time.RFC3339Nano, *r.BeforeTime)
		if err != nil {
			return ipc.Err{Message: fmt.Sprintf("journal_compact: before_time: %q is not an RFC 3339 time", *r.BeforeTime)}
		}
		opt.BeforeTime = t
	default:
		return ipc.Err{Message: "journal_compact: give before_seq or before_time"}
	}
	res, err := d.compact(opt)
	if err != nil {
		d.log.Warn("journal compaction failed; the journal is as it was", "err", err)
		return ipc.Err{Message: "journal_compact: " + err.Error()}
	}
	return replay.CompactedOf(res)
}

// retain is called after each periodic snapshot: with RetainEvents set,
// once the journal holds more than RetainEvents + SnapshotEvery events, it
// compacts in the background so that the newest RetainEvents stay.
func (d *Daemon) retain() {
	keep := d.cfg.RetainEvents
	if keep == 0 {
		return
	}
	head, _ := d.store.Head()
	first := uint64(1)
	if ck := journal.CheckpointOf(d.store); ck != nil {
		first = ck.Seq + 1
	}
	if head < first || head-first+1 <= keep+d.cfg.SnapshotEvery {
		return
	}
	before := head - keep + 1 // events before it go; head-keep+1..head stay
	go func() {
		res, err := d.compact(replay.CompactOptions{BeforeSeq: before})
		switch {
		case errors.Is(err, errCompacting):
		case err != nil:
			d.log.Warn("automatic journal compaction failed; the journal is as it was", "retain_events", keep, "err", err)
		default:
			d.log.Info("journal compacted (--retain-events)", "retain_events", keep, "checkpoint", res.Checkpoint.Seq,
				"archive", res.Archive, "bytes_before", res.BytesBefore, "bytes_after", res.BytesAfter)
		}
	}()
}
