// Package replay rebuilds the projected state from a journal: the newest
// usable snapshot, then the events after it. The daemon boots with it and
// overlayctl reads an offline journal with it, so both see the same state.
package replay

import (
	"errors"
	"fmt"
	"time"

	"github.com/zlayer/overlayd/journal"
	"github.com/zlayer/overlayd/projections"
)

// Stats describe one load.
type Stats struct {
	SnapshotSeq    uint64        // 0 = no snapshot used
	SnapshotReason string        // why a snapshot was not used, if it was not
	Replayed       uint64        // events applied after the snapshot
	Skipped        uint64        // ignorable events of unknown type
	Duration       time.Duration // wall time of the load
}

// Options tune Load.
type Options struct {
	// NoSnapshot forces a full replay.
	NoSnapshot bool
	// Verify checks every replayed event's hash and link.
	Verify bool
	// UpTo stops after this sequence number (0 = the whole journal).
	UpTo uint64
	// Progress, when set, is called after every ProgressEvery replayed
	// events (default 250,000) with the sequence reached.
	Progress      func(seq uint64)
	ProgressEvery uint64
}

// Load rebuilds the state. A snapshot is used only when its schema is the
// current one, its checksum holds and the event it ends at still has the
// hash it recorded; otherwise the whole journal is replayed.
func Load(store journal.Store, opt Options) (*projections.State, Stats, error) {
	start := time.Now()
	var st Stats
	s := projections.New()
	if !opt.NoSnapshot {
		snap, reason := usableSnapshot(store, opt.UpTo)
		if snap != nil {
			s, st.SnapshotSeq = snap, snap.Seq
		} else {
			st.SnapshotReason = reason
		}
	} else {
		st.SnapshotReason = "disabled"
	}
	var done = errors.New("done")
	every := opt.ProgressEvery
	if every == 0 {
		every = 250_000
	}
	err := store.Iterate(s.Seq, opt.Verify, func(e *journal.Envelope) error {
		if opt.UpTo != 0 && e.Seq > opt.UpTo {
			return done
		}
		if e.Seq != s.Seq+1 {
			return fmt.Errorf("replay: event %d follows %d: the journal has a gap", e.Seq, s.Seq)
		}
		ev, err := projections.DecodeEvent(e.Type, e.Version, e.Payload)
		if err != nil {
			if errors.Is(err, projections.ErrUnknownEvent) && e.Ignorable {
				st.Skipped++
				s.Seq = e.Seq
				return nil
			}
			return fmt.Errorf("replay: event %d (%s, id %s): %w; a newer daemon may have written it", e.Seq, e.Type, e.ID, err)
		}
		if err := s.Apply(ev); err != nil {
			return fmt.Errorf("replay: event %d (%s, id %s): %w", e.Seq, e.Type, e.ID, err)
		}
		s.Seq = e.Seq
		st.Replayed++
		if opt.Progress != nil && st.Replayed%every == 0 {
			opt.Progress(e.Seq)
		}
		return nil
	})
	if err != nil && !errors.Is(err, done) {
		return nil, st, err
	}
	st.Duration = time.Since(start)
	return s, st, nil
}

func usableSnapshot(store journal.Store, upTo uint64) (*projections.State, string) {
	sn, err := store.LoadSnapshot()
	switch {
	case err != nil:
		return nil, err.Error()
	case sn == nil:
		return nil, "no snapshot"
	case sn.Schema != projections.SnapshotSchema:
		return nil, fmt.Sprintf("snapshot schema %d, this build uses %d", sn.Schema, projections.SnapshotSchema)
	case upTo != 0 && sn.Seq > upTo:
		return nil, "snapshot is newer than the requested sequence"
	}
	if sn.Seq > 0 {
		h, err := store.HashAt(sn.Seq)
		if err != nil || h != sn.Hash {
			return nil, fmt.Sprintf("snapshot at %d does not match the journal's event %d", sn.Seq, sn.Seq)
		}
	}
	s, err := projections.DecodeSnapshot(sn.Body)
	if err != nil {
		return nil, err.Error()
	}
	if s.Seq != sn.Seq {
		return nil, fmt.Sprintf("snapshot body is at %d, header at %d", s.Seq, sn.Seq)
	}
	return s, ""
}

// Snapshot encodes s as a journal snapshot; hash is the hash of event s.Seq.
func Snapshot(s *projections.State, hash [32]byte) *journal.Snapshot {
	return &journal.Snapshot{Schema: projections.SnapshotSchema, Seq: s.Seq, Hash: hash, Body: s.EncodeSnapshot()}
}
