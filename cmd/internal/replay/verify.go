package replay

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/zlayer/overlayd/ipc"

	"github.com/zlayer/overlayd/journal"
	"github.com/zlayer/overlayd/projections"
)

// Report is the result of Verify: the hash chain, a full replay, the
// state's invariants, the snapshot, and optionally a live state.
type Report struct {
	Chain       *journal.Report `json:"chain"`
	Replayed    uint64          `json:"replayed_events"`
	ReplayError string          `json:"replay_error,omitempty"`
	Invariants  string          `json:"invariant_error,omitempty"`
	SnapshotSeq uint64          `json:"snapshot_seq,omitempty"`
	Snapshot    string          `json:"snapshot"`
	// Checkpoint describes a compacted journal's checkpoint ("" when the
	// journal was never compacted): the chain is proved from it.
	Checkpoint    string `json:"checkpoint,omitempty"`
	CheckpointSeq uint64 `json:"checkpoint_seq,omitempty"`
	// Archives is the check of the archives (VerifyArchives), when asked.
	Archives *ArchivesReport `json:"archives,omitempty"`
	Live     string          `json:"live,omitempty"`
	Problems []string        `json:"problems,omitempty"`
}

// OK reports whether everything checked out.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Verify checks store: every event's hash and link; that the journal
// replays without error into a state that keeps its invariants; that the
// snapshot, if any, equals a replay up to its sequence; and, when live is
// given (a daemon's state, as JSON, at liveSeq), that it equals a replay up
// to liveSeq.
func Verify(store journal.Store, live []byte, liveSeq uint64) (*Report, error) {
	r := &Report{}
	chain, err := store.Verify()
	if err != nil {
		return nil, err
	}
	r.Chain = chain
	if ck := journal.CheckpointOf(store); ck != nil {
		r.CheckpointSeq = ck.Seq
		r.Checkpoint = fmt.Sprintf("at %d (archive %s): the chain is proved from it, and the replay starts from its state", ck.Seq, ck.Archive().Name)
	}
	for _, p := range chain.Problems {
		if p.ID == "" && strings.HasPrefix(p.Err, journal.ErrCheckpointCorrupt.Error()) {
			r.Problems = append(r.Problems, p.Err) // it names the checkpoint
			continue
		}
		r.Problems = append(r.Problems, fmt.Sprintf("event %d (%s): %s", p.Seq, p.ID, p.Err))
	}
	if len(chain.Problems) > 0 {
		return r, nil // a broken chain makes the replay checks meaningless
	}
	full, st, err := Load(store, Options{NoSnapshot: true})
	r.Replayed = st.Replayed
	if err != nil {
		r.ReplayError = err.Error()
		r.Problems = append(r.Problems, "replay: "+err.Error())
		return r, nil
	}
	if err := full.CheckInvariants(); err != nil {
		r.Invariants = err.Error()
		r.Problems = append(r.Problems, "invariants: "+err.Error())
	}
	// A replay up to seq. The snapshot and the live state are usually at
	// the end of the full replay (the daemon snapshots at its head): that
	// replay is their answer, rather than a second one of every event.
	replayUpTo := func(seq uint64) (*projections.State, error) {
		if seq == full.Seq {
			return full, nil
		}
		s, _, err := Load(store, Options{NoSnapshot: true, UpTo: seq})
		return s, err
	}
	r.Snapshot = "none"
	if sn, err := store.LoadSnapshot(); err != nil {
		r.Snapshot = "unreadable (the next boot replays in full): " + err.Error()
	} else if sn != nil {
		r.SnapshotSeq = sn.Seq
		head, _ := store.Head() // a daemon's journal may have grown since the full replay
		switch {
		case !sn.Journal.IsZero() && sn.Journal != store.Identity().ID:
			r.Snapshot = fmt.Sprintf("at %d belongs to journal %s, not this one (%s): ignored at boot", sn.Seq, sn.Journal, store.Identity().ID)
			r.Problems = append(r.Problems, "snapshot: "+r.Snapshot)
		case sn.Schema != projections.SnapshotSchema:
			r.Snapshot = fmt.Sprintf("schema %d is not this build's %d (ignored at boot)", sn.Schema, projections.SnapshotSchema)
		case sn.Seq < r.CheckpointSeq:
			r.Snapshot = fmt.Sprintf("at %d is older than the checkpoint at %d (ignored at boot)", sn.Seq, r.CheckpointSeq)
		case sn.Seq > head:
			// Nothing to replay it against.
			r.Snapshot = fmt.Sprintf("at %d is past the journal's head %d: events %d..%d are missing from the journal (run `overlayctl journal repair`)", sn.Seq, head, head+1, sn.Seq)
			r.Problems = append(r.Problems, "snapshot: "+r.Snapshot)
		default:
			upto, err := replayUpTo(sn.Seq)
			if err != nil {
				return nil, err
			}
			want, _ := upto.CanonicalJSON()
			var got []byte
			decoded, derr := projections.DecodeSnapshot(sn.Body)
			if derr == nil {
				got, _ = decoded.CanonicalJSON()
			}
			h, herr := store.HashAt(sn.Seq)
			switch {
			case sn.Seq > 0 && (herr != nil || h != sn.Hash):
				r.Snapshot = fmt.Sprintf("at %d does not match the journal's event hash (ignored at boot)", sn.Seq)
			case derr != nil:
				r.Snapshot = fmt.Sprintf("at %d cannot be decoded (ignored at boot): %v", sn.Seq, derr)
			case !bytes.Equal(want, got):
				r.Snapshot = fmt.Sprintf("at %d differs from a replay up to %d", sn.Seq, sn.Seq)
				r.Problems = append(r.Problems, "snapshot: "+r.Snapshot)
			default:
				r.Snapshot = fmt.Sprintf("at %d equals a replay up to %d", sn.Seq, sn.Seq)
			}
		}
	}
	if live != nil {
		upto, err := replayUpTo(liveSeq)
		if err != nil {
			return nil, err
		}
		want, _ := upto.CanonicalJSON()
		if bytes.Equal(want, live) {
			r.Live = fmt.Sprintf("the daemon's state at %d equals a replay up to %d", liveSeq, liveSeq)
		} else {
			r.Live = fmt.Sprintf("the daemon's state at %d differs from a replay up to %d", liveSeq, liveSeq)
			r.Problems = append(r.Problems, "live: "+r.Live)
		}
	}
	return r, nil
}

// JournalEventOf renders an envelope for journal_list and overlayctl.
func JournalEventOf(e *journal.Envelope) ipc.JournalEvent {
	je := ipc.JournalEvent{Seq: e.Seq, ID: e.ID.String(), Time: e.Time.UTC().Format(time.RFC3339Nano), Type: e.Type,
		Version: e.Version, Op: e.Cause.Op, RequestID: e.Cause.RequestID,
		Exe: e.Cause.Exe, Payload: append([]byte(nil), e.Payload...), Hash: fmt.Sprintf("%x", e.Hash), PrevHash: fmt.Sprintf("%x", e.PrevHash)}
	if e.Cause.HasPeer {
		uid, pid := e.Cause.UID, e.Cause.PID
		je.PeerUID, je.PeerPID = &uid, &pid
	}
	return je
}
