package replay

import (
	"errors"
	"fmt"
	"time"

	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/journal"
	"github.com/zlayer/overlayd/projections"
)

// Compactable is a journal that compaction can rewrite: journal.BoltStore,
// or a journal.Faulty over one.
type Compactable interface {
	journal.Store
	Compact(through uint64, state journal.CheckpointState) (*journal.CompactResult, error)
}

// CompactOptions say where a compaction cuts: every event before
// BeforeSeq, or every event whose time is before BeforeTime, is sealed
// into the archive (exactly one of the two is set).
type CompactOptions struct {
	BeforeSeq  uint64
	BeforeTime time.Time
}

// ErrNothingToCompact is returned when no event lies before the point.
var ErrNothingToCompact = errors.New("replay: no event to compact before that point")

// CompactPoint resolves opt to the checkpoint's sequence N (the last
// event archived) on store.
func CompactPoint(store journal.Store, opt CompactOptions) (uint64, error) {
	first := uint64(1)
	if ck := journal.CheckpointOf(store); ck != nil {
		first = ck.Seq + 1
	}
	head, _ := store.Head()
	var n uint64
	switch {
	case opt.BeforeSeq != 0 && !opt.BeforeTime.IsZero():
		return 0, errors.New("replay: compact: give a sequence or a time, not both")
	case opt.BeforeSeq != 0:
		n = min(opt.BeforeSeq-1, head)
	case !opt.BeforeTime.IsZero():
		if ix, ok := store.(interface {
			SeqAtTime(time.Time) (uint64, error)
		}); ok {
			// The last event at or before the instant just before: O(log n).
			seq, err := ix.SeqAtTime(opt.BeforeTime.Add(-time.Nanosecond))
			if err != nil {
				return 0, err
			}
			n = seq
			break
		}
		stop := errors.New("stop")
		n = first - 1
		err := store.Iterate(first-1, false, func(e *journal.Envelope) error {
			if !e.Time.Before(opt.BeforeTime) {
				return stop
			}
			n = e.Seq
			return nil
		})
		if err != nil && !errors.Is(err, stop) {
			return 0, err
		}
	default:
		return 0, errors.New("replay: compact: give --before SEQ or --before TIME")
	}
	if n < first {
		return 0, fmt.Errorf("%w: the journal holds events %d..%d", ErrNothingToCompact, first, head)
	}
	return n, nil
}

// Compact seals the events before opt's point into an archive and
// replaces them by a checkpoint holding the state there, which it rebuilds
// first (Load up to the point, verifying every event it replays). It is
// what `overlayctl journal compact` (offline) and the daemon's
// journal_compact run. Commits go on meanwhile; they wait only while the
// file is rewritten and swapped (journal.BoltStore.Compact).
func Compact(store Compactable, opt CompactOptions) (*journal.CompactResult, error) {
	n, err := CompactPoint(store, opt)
	if err != nil {
		return nil, err
	}
	return CompactThrough(store, n)
}

// CompactThrough is Compact with the checkpoint's sequence given.
func CompactThrough(store Compactable, n uint64) (*journal.CompactResult, error) {
	st, _, err := Load(store, Options{UpTo: n, Verify: true})
	if err != nil {
		return nil, fmt.Errorf("replay: compact through %d: rebuild the state there: %w", n, err)
	}
	if st.Seq != n {
		return nil, fmt.Errorf("replay: compact through %d: the replay ended at %d", n, st.Seq)
	}
	return store.Compact(n, journal.CheckpointState{Schema: projections.SnapshotSchema, Body: st.EncodeSnapshot()})
}

// compactLockTimeout bounds an offline compaction's wait for the
// journal's lock: a running daemon holds it, and CompactDir refuses.
const compactLockTimeout = 200 * time.Millisecond

// CompactDir compacts the journal in dir (the data dir's overlayd
// directory) offline. It fails with journal.ErrLocked while a daemon
// holds the file: compact through the daemon then (journal_compact).
func CompactDir(dir string, opt CompactOptions) (*journal.CompactResult, error) {
	// With the daemon's indexer: another one would re-index the file.
	store, err := journal.Open(dir, Indexing(journal.Options{LockTimeout: compactLockTimeout}))
	if err != nil {
		return nil, err
	}
	res, err := Compact(store, opt)
	if cerr := store.Close(); err == nil && cerr != nil {
		return res, cerr
	}
	return res, err
}

// CompactedOf is the wire form of a compaction's result (journal_compact's
// answer, and overlayctl's output).
func CompactedOf(res *journal.CompactResult) ipc.JournalCompacted {
	ck := res.Checkpoint
	return ipc.JournalCompacted{Archive: res.Archive, FirstSeq: ck.Archive().First, CheckpointSeq: ck.Seq, Events: res.Events,
		HeadSeq: res.Head, ArchiveBytes: res.ArchiveBytes, BytesBefore: res.BytesBefore, BytesAfter: res.BytesAfter,
		TookMS: float64(res.Took.Microseconds()) / 1000, HeldMS: float64(res.Held.Microseconds()) / 1000}
}
