package journal

import (
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Append queues recs; the Commit resolves once they are durable. After a
// failed commit it fails at once with an error wrapping ErrReadOnly and
// the cause, until Recover succeeds.
func (s *BoltStore) Append(recs []Record) *Commit {
	return s.enqueue(item{recs: recs})
}

func (s *BoltStore) enqueue(it item) *Commit {
	c := newCommit()
	it.commit = c
	if s.opt.ReadOnly {
		c.resolve(nil, fmt.Errorf("journal: %s is open read-only", s.path))
		return c
	}
	s.sendMu.RLock()
	defer s.sendMu.RUnlock()
	s.mu.Lock()
	err := s.failed
	if s.closing {
		err = ErrClosed
	}
	it.epoch = s.epoch
	s.mu.Unlock()
	if err != nil {
		c.resolve(nil, err)
		return c
	}
	s.queue <- it
	return c
}

// fail makes the store read-only with cause (unless it already is).
// keepCause: a store already read-only keeps the cause it has.
func (s *BoltStore) fail(cause error, keepCause bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil && keepCause {
		return
	}
	if s.failed == nil {
		s.since = time.Now()
		s.epoch++
	}
	if errors.Is(cause, ErrReadOnly) {
		s.failed = cause
	} else {
		s.failed = fmt.Errorf("%w: %w", ErrReadOnly, cause)
	}
}

// Health reports whether writes are accepted, and if not why and since
// when.
func (s *BoltStore) Health() Health {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed == nil {
		return Health{}
	}
	return Health{Err: s.failed, Since: s.since}
}

// writer commits queued items in batches until Close.
func (s *BoltStore) writer() {
	defer close(s.done)
	for first := range s.queue {
		batch := []item{first}
		n := len(first.recs) + len(first.raw)
	drain:
		for n < s.opt.MaxBatch {
			select {
			case it, ok := <-s.queue:
				if !ok {
					break drain
				}
				batch = append(batch, it)
				n += len(it.recs) + len(it.raw)
			default:
				break drain
			}
		}
		s.commitBatch(batch)
	}
}

func (s *BoltStore) commitBatch(batch []item) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	failed, epoch := s.failed, s.epoch
	seq, prev := s.headSeq, s.headHash
	s.mu.Unlock()
	// Items appended before a failure fail with it, even when Recover has
	// succeeded since: they were decided against a state that included
	// the failed batch.
	live, nLive := batch[:0], 0
	for _, it := range batch {
		switch {
		case it.epoch != epoch:
			it.fail(s.staleErr())
		case failed != nil:
			it.fail(failed)
		default:
			live = append(live, it)
			nLive += len(it.recs) + len(it.raw)
		}
	}
	if len(live) == 0 {
		return
	}
	obs := s.observer()
	h, err := s.acquire()
	if err != nil {
		s.fail(err, true)
		if obs != nil {
			obs(CommitInfo{Events: nLive, Err: err})
		}
		for _, it := range live {
			it.fail(s.Health().Err)
		}
		return
	}
	t0 := time.Now()
	first := seq + 1
	now := s.ids.now()
	envs := make([][]Envelope, len(live))
	var lastID [16]byte
	err = s.updateOn(h, "commit", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		if b == nil {
			return fmt.Errorf("the events bucket is missing")
		}
		b.FillPercent = 1.0
		for i, it := range live {
			for _, raw := range it.raw {
				e, err := decodeEnvelope(raw, true)
				switch {
				case err != nil:
					return fmt.Errorf("restored event %d: %w", seq+1, err)
				case e.Seq != seq+1 || e.PrevHash != prev:
					return fmt.Errorf("restored event %d: %w: does not follow event %d", e.Seq, ErrHashMismatch, seq)
				}
				if err := b.Put(seqKey(e.Seq), append([]byte(nil), raw...)); err != nil {
					return err
				}
				seq, prev, lastID = e.Seq, e.Hash, e.ID
				envs[i] = append(envs[i], *e)
			}
			for _, r := range it.recs {
				seq++
				e := Envelope{ID: s.ids.next(now), Seq: seq, Time: now, Type: r.Type, Version: r.Version,
					Ignorable: r.Ignorable, Cause: r.Cause, Payload: r.Payload, PrevHash: prev}
				// bbolt keeps the value until the commit: one buffer each.
				if err := b.Put(seqKey(seq), e.encode(nil)); err != nil {
					return err
				}
				prev = e.Hash
				envs[i] = append(envs[i], e)
			}
		}
		if err := tx.Bucket(bucketMeta).Put(keyHead, encodeHead(seq, prev)); err != nil {
			return err
		}
		if s.faultHook != nil {
			if err := s.faultHook("commit"); err != nil {
				return err
			}
		}
		hit("journal/before-commit")
		return nil
	})
	s.release(h)
	if err == nil && s.faultHook != nil {
		// Tests: a commit that reached the file but whose sync failed.
		if herr := s.faultHook("synced"); herr != nil {
			err = herr
		}
	}
	if obs != nil {
		ci := CommitInfo{Took: time.Since(t0), Events: nLive, Err: err}
		if err == nil {
			ci.Types = make([]string, 0, nLive)
			for _, es := range envs {
				for _, e := range es {
					ci.Types = append(ci.Types, e.Type)
				}
			}
		}
		obs(ci)
	}
	if err != nil {
		cause := fmt.Errorf("commit of events %d..%d to %s: %w", first, first+uint64(nLive)-1, s.path, err)
		if IsDamage(err) {
			cause = err
		}
		s.fail(cause, true)
		if m, ok := markOf(envs); ok {
			s.mu.Lock()
			s.discard = append(s.discard, m)
			s.mu.Unlock()
		}
		ferr := s.Health().Err
		for _, it := range live {
			it.fail(ferr)
		}
		return
	}
	if lastID != ([16]byte{}) {
		s.ids.seed(lastID)
	}
	hit("journal/after-commit")
	s.mu.Lock()
	s.headSeq, s.headHash = seq, prev
	s.stats.Commits++
	s.stats.Records += uint64(nLive)
	s.stats.Appends += uint64(len(live))
	s.mu.Unlock()
	for i, it := range live {
		it.commit.resolve(envs[i], nil)
	}
	s.kickIndexer()
}

// markOf describes the events a failed commit built, from first to last.
func markOf(envs [][]Envelope) (discardMark, bool) {
	var m discardMark
	found := false
	for _, es := range envs {
		for _, e := range es {
			if !found {
				m.firstSeq, m.firstHash, found = e.Seq, e.Hash, true
			}
			m.lastSeq, m.lastHash = e.Seq, e.Hash
		}
	}
	return m, found
}

func (s *BoltStore) staleErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil {
		return s.failed
	}
	return fmt.Errorf("%w: an earlier commit to %s failed after this append was queued", ErrReadOnly, s.path)
}

func (it item) fail(err error) { it.commit.resolve(nil, err) }

// Stats counts the store's work since Open.
type Stats struct {
	Commits uint64 // bbolt transactions (each one fsync)
	Appends uint64 // Append calls committed
	Records uint64 // events committed
}

// Stats returns the counters.
func (s *BoltStore) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Head is the last acknowledged event.
func (s *BoltStore) Head() (uint64, [32]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.headSeq, s.headHash
}
