package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The indexer: one goroutine of a writable BoltStore indexes the
// acknowledged events past "through", in transactions of its own, so that
// a commit never writes index keys (each event's terms fall on pages of
// their own all over the index: written in the commit, they made a group
// commit several times slower). Each batch reads its events and computes
// their terms in a read transaction (commits go on), then writes the keys
// and the new "through" in a write transaction under the writer's lock: a
// commit waits for at most one batch's puts. After a commit the indexer
// waits indexDelay to gather more events into one transaction.
//
// The same loop is the migration: a journal written before indexes (or
// indexed with another IndexVersion) starts at through 0. A crash between
// batches resumes from "through" at the next writable Open; re-indexing an
// event puts the same keys again.

// indexDelay is how long the indexer lets commits gather after one.
const indexDelay = 50 * time.Millisecond

// steadyIndexBatch bounds a batch once the index is within migrationLag
// of the head: while the daemon serves, one batch holds the writer's lock
// for a few milliseconds, not the tens that a migration batch takes
// (tools/bench -only throughput: p99 at 64 clients 36 ms with 5000-event
// batches behind 250 ms).
const (
	steadyIndexBatch = 512
	migrationLag     = 20_000
)

// While commits keep coming the indexer defers its work (commands first)
// until the index is deferLag events behind or maxDefer has passed: index
// reads scan what the index does not cover yet (at most maxIndexLag), so
// answers stay exact, only slower.
const (
	deferLag = 32_768
	maxDefer = 5 * time.Second
)

// indexBatchHook, when set (tests), is called on the indexer goroutine
// after each batch with the new through.
var indexBatchHook func(s *BoltStore, through uint64)

// indexPausedHook, when set (tests), is called on the indexer goroutine
// when it found the journal read-only, just before it exits.
var indexPausedHook func(s *BoltStore)

// indexerLoopHook, when set (tests), is called on the indexer goroutine
// each time it sets out to catch up (with its stop channel).
var indexerLoopHook func(s *BoltStore, stop chan struct{})

// startIndexer starts the indexer goroutine unless the index is off or it
// is already running.
func (s *BoltStore) startIndexer() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.idx.on || s.closing || s.idx.closed {
		return
	}
	if s.idx.done != nil {
		s.idx.again = true
		return
	}
	s.idx.stop, s.idx.done = make(chan struct{}), make(chan struct{})
	go s.indexer(s.idx.stop, s.idx.done)
}

// kickIndexer tells the indexer that events were committed.
func (s *BoltStore) kickIndexer() {
	s.mu.Lock()
	kick := s.idx.kick
	s.mu.Unlock()
	if kick != nil {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
}

// stopIndexer stops the indexer and waits for it: when what is left to
// index fits in one batch it is indexed first, so that a journal closed
// cleanly is indexed to its head.
func (s *BoltStore) stopIndexer() {
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

func (s *BoltStore) indexer(stop, done chan struct{}) {
	defer func() {
		s.mu.Lock()
		s.idx.done = nil
		// A Recover that ran while this indexer was leaving (it saw the
		// journal read-only just before Recover made it writable again)
		// asked for an indexer: hand over to a successor under the same
		// lock, so that Close (stopIndexer) finds one or the other, unless
		// Close is already stopping this one (stopIndexer clears stop).
		if s.idx.again && s.idx.stop == stop && s.idx.on && !s.closing && !s.idx.closed {
			s.idx.done = make(chan struct{})
			go s.indexer(stop, s.idx.done)
		}
		s.idx.again = false
		s.mu.Unlock()
		close(done)
	}()
	s.mu.Lock()
	kick, from, head := s.idx.kick, s.idx.through, s.headSeq
	s.mu.Unlock()
	if head-from > uint64(s.batchSize()) {
		start := time.Now()
		slog.Info("journal: indexing events in the background", "file", s.path, "from", from+1, "to", head)
		if !s.catchUp(stop, false) {
			s.finishIfStopped(stop)
			return
		}
		slog.Info("journal: index complete", "file", s.path, "events", head-from, "took", time.Since(start).Round(time.Millisecond))
	}
	for {
		if indexerLoopHook != nil {
			indexerLoopHook(s, stop)
		}
		if !s.catchUp(stop, false) {
			s.finishIfStopped(stop)
			return
		}
		select {
		case <-stop:
			s.catchUp(nil, true)
			return
		case <-kick:
		}
		// Commands first: while commits keep coming, wait for a pause of
		// indexDelay, as long as the index stays well within what reads
		// can make up by scanning (deferLag) and for at most maxDefer.
		deferred := time.Now()
	quiet:
		for {
			select {
			case <-stop:
				s.catchUp(nil, true)
				return
			case <-time.After(indexDelay):
				break quiet
			case <-kick:
				if s.indexLag() >= deferLag || time.Since(deferred) >= maxDefer {
					break quiet
				}
			}
		}
	}
}

// finishIfStopped: a catch-up cut short by Close (stop closed between
// batches, or just as the indexer woke) still indexes what is left when it
// fits in one batch, as a Close that found the indexer waiting does, so
// that a journal closed cleanly is indexed to its head.
func (s *BoltStore) finishIfStopped(stop chan struct{}) {
	select {
	case <-stop:
		s.catchUp(nil, true)
	default:
	}
}

// indexLag is how many acknowledged events the index does not cover yet.
func (s *BoltStore) indexLag() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.headSeq - s.idx.through
}

func (s *BoltStore) batchSize() int {
	if s.opt.IndexBatch > 0 {
		return s.opt.IndexBatch
	}
	return defaultIndexBatch
}

// catchUp indexes batches until the index reaches the head; false when it
// stopped (stop closed, or an error, logged). final: only when what is
// left fits in one batch (Close).
func (s *BoltStore) catchUp(stop chan struct{}, final bool) bool {
	if final {
		s.mu.Lock()
		lag, failed := s.headSeq-s.idx.through, s.failed
		s.mu.Unlock()
		if lag == 0 || lag > uint64(s.batchSize()) || failed != nil {
			return false
		}
	}
	for {
		select {
		case <-stop:
			return false
		default:
		}
		batchStart := time.Now()
		through, complete, err := s.indexBatch()
		if errors.Is(err, ErrReadOnly) {
			slog.Info("journal: indexing paused until the journal recovers", "file", s.path)
			if indexPausedHook != nil {
				indexPausedHook(s)
			}
			return false
		}
		if err != nil {
			slog.Warn("journal: indexing stopped; index reads fall back to scans", "file", s.path, "err", err)
			return false
		}
		if indexBatchHook != nil && through > 0 {
			indexBatchHook(s, through)
		}
		if complete {
			return true
		}
		// Let the writer take its lock (Go's mutex is not fair), and while
		// commits keep coming give them at least as much time as the
		// batch took, unless the index is falling too far behind.
		pause := time.Millisecond
		if !final && s.indexLag() < deferLag && time.Since(batchStart) > pause {
			s.mu.Lock()
			kick := s.idx.kick
			s.mu.Unlock()
			select {
			case <-kick:
				pause = time.Since(batchStart)
				s.kickIndexer() // keep the kick for the indexer's loop
			default:
			}
		}
		time.Sleep(pause)
	}
}

// indexBatch indexes the next batch of acknowledged events; complete when
// the index covers the head. through is 0 when there was nothing to do.
func (s *BoltStore) indexBatch() (through uint64, complete bool, err error) {
	s.mu.Lock()
	from, head, failed, ck := s.idx.through+1, s.headSeq, s.failed, s.ckpt
	s.mu.Unlock()
	if failed != nil {
		return 0, false, failed
	}
	if from > head {
		return 0, true, nil
	}
	size := uint64(s.batchSize())
	if s.opt.IndexBatch == 0 && head-from < migrationLag {
		size = steadyIndexBatch
	}
	to := min(from+size-1, head)
	var keys [][]byte
	newTerms := map[string]bool{}
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
			for _, t := range terms {
				newTerms[t] = true
			}
		}
		// The terms the terms bucket does not hold yet (a Put of one it
		// holds would rewrite its page for nothing).
		if tb := tx.Bucket(bucketTerms); tb != nil {
			for t := range newTerms {
				if tb.Get([]byte(t)) != nil {
					delete(newTerms, t)
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0, false, s.readErr(err)
	}
	sortKeys(keys)
	hit("journal/index-read")
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	version, failed, ckNow, throughNow := s.idx.version, s.failed, s.ckpt, s.idx.through
	s.mu.Unlock()
	if failed != nil {
		return 0, false, failed
	}
	if ckNow != ck || throughNow+1 != from {
		// A compaction swapped the file since the read: the batch may hold
		// archived events (their keys must not enter the compacted file).
		// Read it again.
		return 0, false, nil
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
		b.FillPercent = indexFillPercent
		for _, k := range keys {
			if err := b.Put(k, nil); err != nil {
				return err
			}
		}
		tb := tx.Bucket(bucketTerms)
		if tb == nil {
			return fmt.Errorf("the terms bucket is missing")
		}
		for _, t := range slices.Sorted(maps.Keys(newTerms)) {
			if err := tb.Put([]byte(t), nil); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keyIndex, encodeIndexRecord(indexRecord{version: version, through: to}))
	})
	if err != nil {
		err = fmt.Errorf("journal: index events %d..%d of %s: %w", from, to, s.path, err)
		s.fail(err, true)
		return 0, false, err
	}
	hit("journal/index-batch")
	s.mu.Lock()
	s.idx.through = to
	head = s.headSeq
	s.mu.Unlock()
	return to, to >= head, nil
}

// indexNow indexes up to the head on the caller's goroutine, in batches
// interleaved with commits (Compact, before its bulk copy). An indexer
// batch running meanwhile is not written twice (indexBatch reads again
// when "through" moved).
func (s *BoltStore) indexNow() {
	s.mu.Lock()
	on := s.idx.on
	s.mu.Unlock()
	for i := 0; on && i < 10_000; i++ {
		if _, complete, err := s.indexBatch(); err != nil || complete {
			return
		}
	}
}
