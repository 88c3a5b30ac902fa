package journal

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Migration: a writable Open of a journal whose index is missing, of
// another IndexVersion, or incomplete (a migration cut short) indexes the
// events up to the head it found, in the background. Each batch reads its
// events and computes their terms in a read transaction (commits go on),
// then writes the keys and the new "through" in a write transaction of its
// own, under the writer's lock: a commit waits for at most one batch's
// puts. Events committed meanwhile are indexed by their own commit. A
// crash (or Close) between batches resumes from "through" at the next
// writable Open; re-indexing an event puts the same keys again.

// startMigration starts the migration goroutine unless the index is
// complete, off, or already being built.
// indexBatchHook, when set (tests), is called on the migration goroutine
// after each batch with the new through.
var indexBatchHook func(s *BoltStore, through uint64)

func (s *BoltStore) startMigration() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.idx.on || s.idx.done != nil || s.closing || s.idx.through >= s.idx.target {
		return
	}
	s.idx.stop, s.idx.done = make(chan struct{}), make(chan struct{})
	go s.migrate(s.idx.stop, s.idx.done)
}

// stopMigration stops the migration after its current batch and waits
// for it.
func (s *BoltStore) stopMigration() {
	s.mu.Lock()
	stop, done := s.idx.stop, s.idx.done
	s.idx.stop = nil
	s.mu.Unlock()
	if done == nil {
		return
	}
	if stop != nil {
		close(stop)
	}
	<-done
}

func (s *BoltStore) migrate(stop, done chan struct{}) {
	defer func() {
		s.mu.Lock()
		s.idx.done = nil
		s.mu.Unlock()
		close(done)
	}()
	start := time.Now()
	s.mu.Lock()
	from, target := s.idx.through, s.idx.target
	s.mu.Unlock()
	slog.Info("journal: indexing events in the background", "file", s.path, "from", from+1, "to", target)
	for {
		select {
		case <-stop:
			return
		default:
		}
		through, complete, err := s.migrateBatch()
		if err != nil {
			slog.Warn("journal: indexing stopped; index reads fall back to scans", "file", s.path, "err", err)
			return
		}
		if indexBatchHook != nil {
			indexBatchHook(s, through)
		}
		if complete {
			slog.Info("journal: index complete", "file", s.path, "events", target-from, "took", time.Since(start).Round(time.Millisecond))
			return
		}
		// Let the writer take its lock (Go's mutex is not fair).
		time.Sleep(time.Millisecond)
	}
}

// migrateBatch indexes the next batch; complete when the index covers the
// head.
func (s *BoltStore) migrateBatch() (through uint64, complete bool, err error) {
	batch := s.opt.IndexBatch
	if batch <= 0 {
		batch = defaultIndexBatch
	}
	s.mu.Lock()
	from, target, failed := s.idx.through+1, s.idx.target, s.failed
	s.mu.Unlock()
	if failed != nil {
		return 0, false, failed
	}
	to := min(from+uint64(batch)-1, target)
	var keys [][]byte
	if from <= to {
		err = s.view("index events", func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketEvents)
			if b == nil {
				return nil
			}
			c := b.Cursor()
			var e Envelope
			for k, v := c.Seek(seqKey(from)); k != nil; k, v = c.Next() {
				if len(k) != 8 {
					return fmt.Errorf("%w: an event stored under a key of %d bytes", ErrMalformed, len(k))
				}
				seq := binary.BigEndian.Uint64(k)
				if seq > to {
					break
				}
				if err := decodeInto(&e, v, false); err != nil {
					return fmt.Errorf("event %d: %w", seq, err)
				}
				terms, err := safeTerms(s.opt.Indexer, seq, e.Type, e.Version, e.Cause.Op, e.Payload)
				if err != nil {
					return err
				}
				keys = postingKeys(keys, terms, seq)
			}
			return nil
		})
		if err != nil {
			return 0, false, s.readErr(err)
		}
		sortKeys(keys)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	head, version, failed := s.headSeq, s.idx.version, s.failed
	s.mu.Unlock()
	if failed != nil {
		return 0, false, failed
	}
	through = to
	if to >= target {
		through = head // every event past target was indexed by its commit
	}
	h, err := s.acquire()
	if err != nil {
		return 0, false, err
	}
	defer s.release(h)
	err = s.updateOn(h, "index events", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketIndex)
		if b == nil {
			return fmt.Errorf("the index bucket is missing")
		}
		for _, k := range keys {
			if err := b.Put(k, nil); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keyIndex, encodeIndexRecord(indexRecord{version: version, through: through}))
	})
	if err != nil {
		err = fmt.Errorf("journal: index events %d..%d of %s: %w", from, to, s.path, err)
		s.fail(err, true)
		return 0, false, err
	}
	hit("journal/index-batch")
	s.mu.Lock()
	s.idx.through = through
	s.mu.Unlock()
	return through, to >= target, nil
}
