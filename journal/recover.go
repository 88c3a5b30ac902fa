package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// recoverProbeSize is the size of the file Recover writes and syncs beside
// the journal to see whether the medium takes writes again.
const recoverProbeSize = 64 << 10

// Recover makes a read-only store writable again. It never retries a
// failed fsync on the handle that saw it: it
//
//  1. writes and syncs a probe file beside the journal (the medium must
//     take writes again; while it does not, nothing else is touched);
//  2. waits for the reads in flight (up to Options.RecoverDrain; new reads
//     wait meanwhile), closes the bbolt handle and opens the file again;
//  3. runs the page check (Check);
//  4. confirms that the last acknowledged event is there with the hash it
//     was acknowledged with, failing with the missing range otherwise;
//  5. deletes every event past it (a commit that failed may have reached
//     the file; it was answered as failed and must not come back) and
//     records the head, in one synced transaction;
//
// and only then accepts writes. When a step fails the store stays
// read-only (Health names the cause) and Recover may be called again. It
// is safe to call while readers run; a no-op on a healthy store.
func (s *BoltStore) Recover() error {
	if s.opt.ReadOnly {
		if h := s.Health(); !h.OK() {
			return fmt.Errorf("journal: %s is open read-only, it cannot be recovered in place: %w", s.path, h.Err)
		}
		return nil
	}
	s.recMu.Lock()
	defer s.recMu.Unlock()
	s.mu.Lock()
	failed, closing := s.failed, s.closing
	ackSeq, ackHash := s.headSeq, s.headHash
	s.mu.Unlock()
	switch {
	case closing:
		return ErrClosed
	case failed == nil:
		return nil
	}
	err := probeWrite(s.path + ".probe")
	if err == nil && s.faultHook != nil {
		err = s.faultHook("recover")
	}
	if err != nil {
		return fmt.Errorf("journal: recover %s: the medium still fails writes: %w (read-only since: %w)", s.path, err, failed)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()

	// Wait for the reads in flight on the old handle.
	s.hmu.Lock()
	s.recovering = true
	old := s.drainReaders()
	if old != nil && old.readers > 0 {
		n := old.readers
		s.recovering = false
		s.hcond.Broadcast()
		s.hmu.Unlock()
		return fmt.Errorf("journal: recover %s: %d read(s) still in flight after %v; try again", s.path, n, s.opt.RecoverDrain)
	}
	s.h = nil
	s.hmu.Unlock()

	var h *handle
	publish := func(herr error) {
		s.hmu.Lock()
		s.h, s.herr = h, herr
		s.recovering = false
		s.hcond.Broadcast()
		s.hmu.Unlock()
	}
	// The descriptor is gone either way; a close error is the same
	// trouble that made the store read-only.
	_ = s.closeHandle(old)
	h, err = s.openHandle()
	if err != nil {
		err = fmt.Errorf("journal: recover: reopen %s: %w", s.path, err)
		s.fail(err, false)
		publish(err)
		return err
	}
	if err := s.recoverOn(h, ackSeq, ackHash); err != nil {
		s.fail(err, false)
		publish(nil)
		return err
	}
	s.mu.Lock()
	s.failed = nil
	s.mu.Unlock()
	publish(nil)
	s.startIndexer() // if a failed write stopped it
	return nil
}

// recoverOn checks the reopened handle h and cuts the file back to the
// acknowledged head.
func (s *BoltStore) recoverOn(h *handle, ackSeq uint64, ackHash [32]byte) error {
	if _, problems, err := s.checkOn(h); err != nil {
		return fmt.Errorf("journal: recover %s: %w", s.path, err)
	} else if len(problems) > 0 {
		return &DamageError{Path: s.path, Op: "recover: page check", Page: pageOf(problems[0]), Msg: joinProblems(problems), Problems: problems}
	}
	var past, pastKeys [][]byte
	err := s.viewOn(h, "recover: confirm the head", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		if b == nil {
			return errors.New("the events bucket is missing")
		}
		if ackSeq > 0 {
			v := b.Get(seqKey(ackSeq))
			if v == nil {
				c := b.Cursor()
				last := uint64(0)
				if k, _ := c.Seek(seqKey(ackSeq)); k != nil {
					k, _ = c.Prev()
					if k != nil {
						last = ne64(k)
					}
				} else if k, _ := c.Last(); k != nil {
					last = ne64(k)
				}
				return fmt.Errorf("acknowledged events %d..%d are missing after the reopen", last+1, ackSeq)
			}
			e, err := decodeEnvelope(v, true)
			if err != nil {
				return fmt.Errorf("acknowledged event %d: %w", ackSeq, err)
			}
			if e.Hash != ackHash {
				return fmt.Errorf("acknowledged event %d has hash %x… after the reopen, it was acknowledged with %x…", ackSeq, e.Hash[:6], ackHash[:6])
			}
		}
		c := b.Cursor()
		for k, _ := c.Seek(seqKey(ackSeq + 1)); k != nil; k, _ = c.Next() {
			past = append(past, append([]byte(nil), k...))
		}
		pastKeys = s.indexCutKeys(tx, ackSeq)
		return nil
	})
	if err != nil {
		return fmt.Errorf("journal: recover %s: %w", s.path, err)
	}
	s.mu.Lock()
	pending := append([]discardMark(nil), s.discard...)
	s.mu.Unlock()
	err = s.updateOn(h, "recover: cut back to the head", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		for _, k := range past {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		if err := s.indexCut(tx, pastKeys, ackSeq); err != nil {
			return err
		}
		m := tx.Bucket(bucketMeta)
		// Record the failed commits, so that a repair scanning the raw
		// pages (where their events may linger) leaves them out.
		if len(pending) > 0 {
			marks := append(decodeDiscarded(m.Get(keyDiscarded)), pending...)
			if len(marks) > maxDiscardMarks {
				marks = marks[len(marks)-maxDiscardMarks:]
			}
			if err := m.Put(keyDiscarded, encodeDiscarded(marks)); err != nil {
				return err
			}
		}
		return m.Put(keyHead, encodeHead(ackSeq, ackHash))
	})
	if err != nil {
		return fmt.Errorf("journal: recover %s: remove %d event(s) past the acknowledged head %d: %w", s.path, len(past), ackSeq, err)
	}
	if len(past) > 0 {
		s.logRemoved(ackSeq, len(past))
	}
	s.mu.Lock()
	s.discard = s.discard[len(pending):]
	s.mu.Unlock()
	if err := guard(s.path, "recover: sync", h.mapping, h.db.Sync); err != nil {
		return fmt.Errorf("journal: recover %s: sync: %w", s.path, err)
	}
	return nil
}

func ne64(k []byte) uint64 {
	if len(k) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(k)
}

func (s *BoltStore) logRemoved(head uint64, n int) {
	slog.Warn("journal: removed events past the acknowledged head (a failed commit had reached the file)",
		"file", s.path, "head", head, "removed", n)
}

// probeWrite writes and syncs recoverProbeSize bytes to path, then
// removes it.
func probeWrite(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(path)
	_, err = f.Write(make([]byte, recoverProbeSize))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// drainReaders waits, hmu held and s.recovering set (so no new read
// starts on it), until the current handle has no reads in flight or
// RecoverDrain has passed, and returns that handle (Recover and a
// compaction's swap both replace it).
func (s *BoltStore) drainReaders() *handle {
	old := s.h
	timedOut := false
	t := time.AfterFunc(s.opt.RecoverDrain, func() {
		s.hmu.Lock()
		timedOut = true
		s.hcond.Broadcast()
		s.hmu.Unlock()
	})
	for old != nil && old.readers > 0 && !timedOut {
		s.hcond.Wait()
	}
	t.Stop()
	return old
}
