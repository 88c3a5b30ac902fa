package replay

import (
	"errors"
	"fmt"

	"github.com/zlayer/overlayd/journal"
	"github.com/zlayer/overlayd/projections"
)

// checkpointState decodes the state a compacted journal's checkpoint
// holds, after checking its hashes, schema and sequence.
func checkpointState(ck *journal.Checkpoint) (*projections.State, error) {
	if err := ck.CheckIntegrity(); err != nil {
		return nil, fmt.Errorf("replay: %w: the journal's history before event %d is only in its archives (verify them with `overlayctl journal verify --archives DIR`)", err, ck.Seq+1)
	}
	if ck.Schema != projections.SnapshotSchema {
		return nil, fmt.Errorf("replay: checkpoint at %d holds a state of schema %d, this build reads %d: %w", ck.Seq, ck.Schema, projections.SnapshotSchema, errCheckpointSchema)
	}
	s, err := projections.DecodeSnapshot(ck.State)
	if err != nil {
		return nil, fmt.Errorf("replay: checkpoint at %d: its state does not decode: %w", ck.Seq, err)
	}
	if s.Seq != ck.Seq {
		return nil, fmt.Errorf("replay: checkpoint at %d holds a state at %d", ck.Seq, s.Seq)
	}
	return s, nil
}

var errCheckpointSchema = errors.New("replay: checkpoint schema")

// startState is where a load begins: the newest usable snapshot, else
// the checkpoint's state (a compacted journal), else the empty state.
// reason says why a snapshot was not used.
func startState(store journal.Store, opt Options) (s *projections.State, snapSeq uint64, reason string, err error) {
	ck := journal.CheckpointOf(store)
	if ck != nil && opt.UpTo != 0 && opt.UpTo < ck.Seq {
		return nil, 0, "", fmt.Errorf("replay: the state at %d cannot be rebuilt from this journal: %w (events up to %d are in its archives %s..%s)",
			opt.UpTo, journal.ErrCompacted, ck.Seq, ck.Archives[0].Name, ck.Archive().Name)
	}
	reason = "disabled"
	if !opt.NoSnapshot {
		var snap *projections.State
		snap, reason = usableSnapshot(store, opt.UpTo, ck)
		if snap != nil {
			return snap, snap.Seq, "", nil
		}
	}
	if ck == nil {
		return projections.New(), 0, reason, nil
	}
	s, err = checkpointState(ck)
	if err != nil {
		return nil, 0, reason, err
	}
	return s, 0, reason, nil
}

// CheckpointStateOf is the state a compacted journal's checkpoint holds
// (its hashes checked), nil when store was never compacted: the earliest
// state a replay of the journal can start from.
func CheckpointStateOf(store journal.Store) (*projections.State, error) {
	ck := journal.CheckpointOf(store)
	if ck == nil {
		return nil, nil
	}
	return checkpointState(ck)
}
