package journal

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Retained states (doc.go, "Indexes"): projection bodies kept in the
// "states" bucket at the intervals the caller chooses, so that the state at
// any point is one of them plus a short replay.

// encodeState is the states bucket's value of sn: u32 schema, [32] hash of
// the event at Seq, [32] SHA-256 of (u64 Seq, schema, hash, body), body.
func encodeState(sn *Snapshot) []byte {
	b := make([]byte, 0, 4+32+32+len(sn.Body))
	b = binary.BigEndian.AppendUint32(b, sn.Schema)
	b = append(b, sn.Hash[:]...)
	sum := stateSum(sn.Seq, b[:36], sn.Body)
	b = append(b, sum[:]...)
	return append(b, sn.Body...)
}

func stateSum(seq uint64, header, body []byte) [32]byte {
	h := sha256.New()
	h.Write(seqKey(seq))
	h.Write(header)
	h.Write(body)
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// decodeState parses a states value stored under seq, checking its sum;
// the body is copied.
func decodeState(seq uint64, v []byte) (*Snapshot, error) {
	if len(v) < 4+32+32 {
		return nil, fmt.Errorf("%w: retained state at %d: %d bytes is too short", ErrSnapshotCorrupt, seq, len(v))
	}
	sn := &Snapshot{Schema: binary.BigEndian.Uint32(v), Seq: seq}
	copy(sn.Hash[:], v[4:36])
	body := v[68:]
	if sum := stateSum(seq, v[:36], body); !bytes.Equal(sum[:], v[36:68]) {
		return nil, fmt.Errorf("%w: retained state at %d: checksum mismatch", ErrSnapshotCorrupt, seq)
	}
	sn.Body = append([]byte(nil), body...)
	return sn, nil
}

// PutState stores snap as the retained state at snap.Seq (replacing one
// there), in a transaction of its own between commits. Refused: past Head
// (ErrSnapshotAhead), a Hash that is not the event's, a read-only store.
// The bucket holds what callers put: they bound it by the interval they
// choose. Safe for concurrent use.
func (s *BoltStore) PutState(snap *Snapshot) error {
	if s.opt.ReadOnly {
		return fmt.Errorf("journal: %s is open read-only", s.path)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	closing, failed, head := s.closing, s.failed, s.headSeq
	s.mu.Unlock()
	switch {
	case closing:
		return ErrClosed
	case failed != nil:
		return failed
	case snap.Seq > head:
		return fmt.Errorf("%w: retained state at %d, head %d (%s)", ErrSnapshotAhead, snap.Seq, head, s.path)
	}
	if snap.Seq > 0 {
		h, err := s.HashAt(snap.Seq)
		if err != nil {
			return fmt.Errorf("journal: retained state at %d: %w", snap.Seq, err)
		}
		if h != snap.Hash {
			return fmt.Errorf("journal: retained state at %d: %w: its hash %x… is not the event's %x…", snap.Seq, ErrHashMismatch, snap.Hash[:6], h[:6])
		}
	}
	h, err := s.acquire()
	if err != nil {
		return err
	}
	defer s.release(h)
	err = s.updateOn(h, "retain a state", func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketStates)
		if err != nil {
			return err
		}
		return b.Put(seqKey(snap.Seq), encodeState(snap))
	})
	if err != nil {
		err = fmt.Errorf("journal: retain the state at %d in %s: %w", snap.Seq, s.path, err)
		s.fail(err, true)
		return err
	}
	s.mu.Lock()
	s.statesPut++
	s.mu.Unlock()
	return nil
}

// StateAtOrBefore returns the newest retained state with Seq <= seq,
// stamped with the journal's id, or nil when there is none. A state whose
// checksum fails is an error wrapping ErrSnapshotCorrupt.
func (s *BoltStore) StateAtOrBefore(seq uint64) (*Snapshot, error) {
	if head, _ := s.Head(); seq > head {
		seq = head
	}
	var sn *Snapshot
	err := s.view("read a retained state", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketStates)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		k, v := c.Seek(seqKey(seq + 1))
		if k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		if k == nil {
			return nil
		}
		if len(k) != 8 {
			return fmt.Errorf("%w: retained state under a key of %d bytes", ErrSnapshotCorrupt, len(k))
		}
		var err error
		sn, err = decodeState(binary.BigEndian.Uint64(k), v)
		return err
	})
	if err != nil {
		return nil, s.readErr(err)
	}
	if sn != nil {
		sn.Journal = s.ident.ID
	}
	return sn, nil
}

// deleteStatesAfter removes the retained states past seq.
func deleteStatesAfter(tx *bolt.Tx, seq uint64) error {
	b := tx.Bucket(bucketStates)
	if b == nil {
		return nil
	}
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(seqKey(seq + 1)); k != nil; k, _ = c.Next() {
		keys = append(keys, append([]byte(nil), k...))
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return fmt.Errorf("retained state %x: %w", k, err)
		}
	}
	return nil
}
