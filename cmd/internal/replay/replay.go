// Package replay rebuilds the projected state from a journal: the newest
// usable snapshot, then the events after it. The daemon boots with it and
// overlayctl reads an offline journal with it, so both see the same state.
package replay

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/zlayer/overlayd/journal"
	"github.com/zlayer/overlayd/projections"
)

// Stats describe one load.
type Stats struct {
	SnapshotSeq    uint64        // 0 = no snapshot used
	CheckpointSeq  uint64        // the compacted journal's checkpoint (0: none); the load started from it when SnapshotSeq is 0
	SnapshotReason string        // why a snapshot was not used, if it was not
	Replayed       uint64        // events applied after the snapshot
	Skipped        uint64        // ignorable events of unknown type
	Duration       time.Duration // wall time of the load
	// StartLoad is the part of Duration spent loading the state the
	// replay starts from (the snapshot, or the checkpoint's state).
	StartLoad time.Duration
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

// Load rebuilds the state. A snapshot is used only when it belongs to this
// journal (its id, or none for one written before ids), its schema is the
// current one, its checksum holds, the event it ends at still has the
// hash it recorded and it is not older than the journal's checkpoint;
// otherwise the whole journal is replayed: from event 1, or, for a
// compacted journal, from its checkpoint's state (NoSnapshot too). A
// state before the checkpoint (UpTo) cannot be rebuilt: ErrCompacted.
func Load(store journal.Store, opt Options) (*projections.State, Stats, error) {
	start := time.Now()
	var st Stats
	if ck := journal.CheckpointOf(store); ck != nil {
		st.CheckpointSeq = ck.Seq
	}
	s, snapSeq, reason, err := startState(store, opt)
	st.StartLoad = time.Since(start)
	if err != nil {
		return nil, st, err
	}
	st.SnapshotSeq, st.SnapshotReason = snapSeq, reason
	every := opt.ProgressEvery
	if every == 0 {
		every = 250_000
	}
	// Reading (and verifying) the journal, decoding the JSON payloads and
	// folding events into the state run in parallel: one goroutine walks
	// the journal in its read transaction and hands out batches of raw
	// events, decoders (one per CPU) turn them into events, and this
	// goroutine applies the batches in journal order.
	type decoded struct {
		seq     uint64
		typ, id string
		ev      projections.Event // nil: an ignorable event of unknown type
		err     error
	}
	type rawEvent struct {
		seq       uint64
		typ, id   string
		ver       uint16
		ignorable bool
		payload   []byte
	}
	type job struct {
		raws []rawEvent
		out  chan []decoded
	}
	futures := make(chan chan []decoded, 64)
	jobs := make(chan job, 64)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < max(1, runtime.GOMAXPROCS(0)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				out := make([]decoded, len(j.raws))
				for i, r := range j.raws {
					ev, err := projections.DecodeEvent(r.typ, r.ver, r.payload)
					if err != nil {
						if errors.Is(err, projections.ErrUnknownEvent) && r.ignorable {
							err = nil
						} else {
							err = fmt.Errorf("replay: event %d (%s, id %s): %w; a newer daemon may have written it", r.seq, r.typ, r.id, err)
						}
						ev = nil
					}
					out[i] = decoded{seq: r.seq, typ: r.typ, id: r.id, ev: ev, err: err}
				}
				j.out <- out
			}
		}()
	}
	var readErr error
	go func() {
		defer func() {
			close(jobs)
			wg.Wait()
			close(futures)
		}()
		done := errors.New("done")
		expect := s.Seq
		batch := make([]rawEvent, 0, 1024)
		send := func() bool {
			fut := make(chan []decoded, 1)
			select {
			case futures <- fut:
			case <-stop:
				return false
			}
			jobs <- job{raws: batch, out: fut}
			batch = make([]rawEvent, 0, 1024)
			return true
		}
		err := store.Iterate(s.Seq, opt.Verify, func(e *journal.Envelope) error {
			if opt.UpTo != 0 && e.Seq > opt.UpTo {
				return done
			}
			if e.Seq != expect+1 {
				return fmt.Errorf("replay: event %d follows %d: the journal has a gap", e.Seq, expect)
			}
			expect = e.Seq
			// The payload is only valid inside the read transaction: copy.
			batch = append(batch, rawEvent{seq: e.Seq, typ: e.Type, id: e.ID.String(), ver: e.Version,
				ignorable: e.Ignorable, payload: append([]byte(nil), e.Payload...)})
			if len(batch) == cap(batch) && !send() {
				return done
			}
			return nil
		})
		if err != nil && !errors.Is(err, done) {
			readErr = err
		}
		if len(batch) > 0 {
			send()
		}
	}()
	var applyErr error
	for fut := range futures {
		b := <-fut
		if applyErr != nil {
			continue // drain
		}
		for _, d := range b {
			if d.err != nil {
				applyErr = d.err
				close(stop)
				break
			}
			if d.ev == nil {
				st.Skipped++
				s.Seq = d.seq
				continue
			}
			if err := s.Apply(d.ev); err != nil {
				applyErr = fmt.Errorf("replay: event %d (%s, id %s): %w", d.seq, d.typ, d.id, err)
				close(stop)
				break
			}
			s.Seq = d.seq
			st.Replayed++
			if opt.Progress != nil && st.Replayed%every == 0 {
				opt.Progress(d.seq)
			}
		}
	}
	if applyErr != nil {
		return nil, st, applyErr
	}
	if readErr != nil {
		return nil, st, readErr
	}
	st.Duration = time.Since(start)
	return s, st, nil
}

func usableSnapshot(store journal.Store, upTo uint64, ck *journal.Checkpoint) (*projections.State, string) {
	sn, err := store.LoadSnapshot()
	switch {
	case err == nil && sn != nil && ck != nil && sn.Seq < ck.Seq:
		return nil, fmt.Sprintf("snapshot at %d is older than the checkpoint at %d", sn.Seq, ck.Seq)
	case err != nil:
		return nil, err.Error()
	case sn == nil:
		return nil, "no snapshot"
	case !sn.Journal.IsZero() && sn.Journal != store.Identity().ID:
		return nil, fmt.Sprintf("snapshot belongs to journal %s, this journal is %s", sn.Journal, store.Identity().ID)
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
