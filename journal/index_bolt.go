package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// indexFillPercent is the index bucket's fill when bbolt splits a page:
// each term's keys are added at the end of its range, so a page left of a
// split is never written again and is best left full.
const indexFillPercent = 0.95

// maxIndexLag is how far the index may be behind Head and still be Ready:
// index reads scan the events past it (index_bolt.go, Postings).
const maxIndexLag = 65536

// indexState is a BoltStore's view of its secondary index.
type indexState struct {
	// Guarded by BoltStore.mu; through changes only under wmu too (the
	// indexer's transactions).
	present bool   // the file has an index record
	on      bool   // writable, and the index is of opt.IndexVersion: the indexer runs
	version uint32 // the file's index version
	through uint64 // every event <= through is indexed

	// The indexer goroutine: guarded by BoltStore.mu. closed: Close has
	// begun, no indexer starts any more.
	closed bool
	stop   chan struct{}
	done   chan struct{} // nil: none running
	// again: startIndexer found one running (Recover, while the indexer
	// may be on its way out after seeing the journal read-only); the one
	// running starts a successor as it exits.
	again bool
	kick  chan struct{} // a commit happened (buffered 1)
}

// initIndex reads the index record and, on a writable open, creates the
// index buckets (dropping an index of another IndexVersion) and starts
// the migration of events not yet indexed. An index that cannot be set up
// is logged and left off: the journal works without it.
func (s *BoltStore) initIndex(h *handle) {
	var rec indexRecord
	var present, buckets bool
	err := s.viewOn(h, "read the index record", func(tx *bolt.Tx) error {
		if m := tx.Bucket(bucketMeta); m != nil {
			rec, present = decodeIndexRecord(m.Get(keyIndex))
		}
		buckets = tx.Bucket(bucketIndex) != nil && tx.Bucket(bucketTerms) != nil && tx.Bucket(bucketStates) != nil
		return nil
	})
	if err != nil {
		slog.Warn("journal: cannot read the index record; the index is off", "file", s.path, "err", err)
		return
	}
	s.mu.Lock()
	head := s.headSeq
	s.idx.present, s.idx.version, s.idx.through = present, rec.version, min(rec.through, head)
	s.mu.Unlock()
	if s.opt.ReadOnly {
		return
	}
	if !present || rec.version != s.opt.IndexVersion || !buckets {
		err := s.updateOn(h, "create the index", func(tx *bolt.Tx) error {
			if present && rec.version != s.opt.IndexVersion {
				for _, name := range [][]byte{bucketIndex, bucketTerms} {
					if err := tx.DeleteBucket(name); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
						return err
					}
				}
			}
			for _, name := range [][]byte{bucketIndex, bucketTerms, bucketStates} {
				if _, err := tx.CreateBucketIfNotExists(name); err != nil {
					return err
				}
			}
			if !present || rec.version != s.opt.IndexVersion {
				rec = indexRecord{version: s.opt.IndexVersion}
			}
			return tx.Bucket(bucketMeta).Put(keyIndex, encodeIndexRecord(rec))
		})
		if err != nil {
			slog.Warn("journal: cannot create the index; the index is off", "file", s.path, "err", err)
			return
		}
		if present && rec.version == s.opt.IndexVersion {
			// the buckets were missing: keep the record's through
		} else if present {
			slog.Info("journal: the index was built with another version; re-indexing", "file", s.path, "version", s.opt.IndexVersion)
		}
	}
	s.mu.Lock()
	s.idx.present, s.idx.on, s.idx.version = true, true, s.opt.IndexVersion
	s.idx.through = min(rec.through, head)
	s.idx.kick = make(chan struct{}, 1)
	s.mu.Unlock()
	s.startIndexer()
}

// IndexStatus says whether Postings and Terms answer: the file's index is
// of Options.IndexVersion and at most maxIndexLag events behind Head (they
// scan the events it does not cover yet). A read-only open reports what
// the file holds (it never indexes).
func (s *BoltStore) IndexStatus() IndexStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.indexStatusLocked()
}

func (s *BoltStore) indexStatusLocked() IndexStatus {
	st := IndexStatus{Version: s.idx.version, Through: s.idx.through}
	st.Ready = s.idx.present && s.idx.version == s.opt.IndexVersion && s.headSeq-s.idx.through <= maxIndexLag
	return st
}

// notReady is the error of an index read while the index is not Ready.
func (s *BoltStore) notReady() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.indexStatusLocked()
	if st.Ready {
		return nil
	}
	switch {
	case !s.idx.present:
		return fmt.Errorf("%w: %s has no index (written before indexes; a writable open builds it)", ErrNoIndex, s.path)
	case s.idx.version != s.opt.IndexVersion:
		return fmt.Errorf("%w: %s is indexed with version %d, not %d", ErrNoIndex, s.path, s.idx.version, s.opt.IndexVersion)
	}
	return fmt.Errorf("%w: %s is indexed through event %d of %d", ErrNoIndex, s.path, st.Through, s.headSeq)
}

// Get returns acknowledged event seq, its payload copied. ErrNotFound
// outside [first, Head].
func (s *BoltStore) Get(seq uint64) (*Envelope, error) {
	if head, _ := s.Head(); seq == 0 || seq > head {
		return nil, fmt.Errorf("event %d: %w", seq, ErrNotFound)
	}
	if ck := s.Checkpoint(); ck != nil && seq <= ck.Seq {
		return nil, ck.compactedErr(seq) // CMP: wraps ErrNotFound
	}
	var e *Envelope
	err := s.view("read an event", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		if b == nil {
			return ErrNotFound
		}
		v := b.Get(seqKey(seq))
		if v == nil {
			return fmt.Errorf("event %d: %w", seq, ErrNotFound)
		}
		var err error
		if e, err = decodeEnvelope(v, false); err != nil {
			return fmt.Errorf("event %d: %w", seq, err)
		}
		e.Payload = append([]byte(nil), e.Payload...)
		return nil
	})
	if err != nil {
		return nil, s.readErr(err)
	}
	return e, nil
}

func (s *BoltStore) readErr(err error) error {
	if IsDamage(err) || errors.Is(err, ErrClosed) || errors.Is(err, ErrNotFound) {
		return err
	}
	return fmt.Errorf("journal %s: %w", s.path, err)
}

// Range calls fn for each acknowledged event in [from, to] (to 0: Head),
// ascending, or descending with reverse. The envelope and its payload are
// only valid during the call. fn's error ends the walk and is returned as
// it is.
func (s *BoltStore) Range(from, to uint64, reverse bool, fn func(*Envelope) error) error {
	head, _ := s.Head()
	from, to, ok := clampRange(from, to, head)
	if !ok {
		return nil
	}
	var userErr error
	err := s.view("read events", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		var e Envelope
		visit := func(k, v []byte) (bool, error) {
			if len(k) != 8 {
				return false, fmt.Errorf("%w: an event stored under a key of %d bytes", ErrMalformed, len(k))
			}
			seq := binary.BigEndian.Uint64(k)
			if seq < from || seq > to {
				return false, nil
			}
			if err := decodeInto(&e, v, false); err != nil {
				return false, fmt.Errorf("event %d: %w", seq, err)
			}
			if err := callUser(fn, &e); err != nil {
				userErr = err
				return false, err
			}
			return true, nil
		}
		if !reverse {
			for k, v := c.Seek(seqKey(from)); k != nil; k, v = c.Next() {
				if more, err := visit(k, v); err != nil || !more {
					return err
				}
			}
			return nil
		}
		k, v := c.Seek(seqKey(to + 1))
		if k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		for ; k != nil; k, v = c.Prev() {
			if more, err := visit(k, v); err != nil || !more {
				return err
			}
		}
		return nil
	})
	if err == nil || err == userErr {
		return err
	}
	return s.readErr(err)
}

// search returns the first acknowledged sequence in the events bucket for
// which pred(value) is true, given that pred is false then true along the
// sequence (binary search over the keys: O(log n) lookups), head+1 when
// there is none; and the first sequence the bucket holds (first > head:
// none).
func (s *BoltStore) search(op string, pred func(seq uint64, v []byte) (bool, error)) (found, first uint64, err error) {
	head, _ := s.Head()
	found, first = head+1, head+1
	err = s.view(op, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		if b == nil {
			return nil
		}
		k, _ := b.Cursor().First()
		if k == nil || len(k) != 8 {
			return nil
		}
		first = binary.BigEndian.Uint64(k)
		lo, hi := first, head+1 // answer in [lo, hi]
		for lo < hi {
			mid := lo + (hi-lo)/2
			v := b.Get(seqKey(mid))
			if v == nil {
				return fmt.Errorf("event %d: %w (sequence numbers have a gap)", mid, ErrNotFound)
			}
			ok, err := pred(mid, v)
			if err != nil {
				return err
			}
			if ok {
				hi = mid
			} else {
				lo = mid + 1
			}
		}
		found = lo
		return nil
	})
	if err != nil {
		return 0, 0, s.readErr(err)
	}
	return found, first, nil
}

// SeqAtTime returns the last acknowledged event with Time <= t (0 when
// there is none), by binary search: commit times do not decrease along
// the sequence while the clock does not step back (events of one commit
// share a time). After a clock step back the answer is an event at one
// of the places where times cross t.
func (s *BoltStore) SeqAtTime(t time.Time) (uint64, error) {
	ns := t.UnixNano()
	after, first, err := s.search("find an event by time", func(seq uint64, v []byte) (bool, error) {
		et, ok := envelopeTime(v)
		if !ok {
			return false, fmt.Errorf("event %d: %w", seq, ErrMalformed)
		}
		return et > ns, nil
	})
	if err != nil || after <= first {
		return 0, err
	}
	return after - 1, nil
}

// SeqOfID returns the sequence of the acknowledged event with id, by
// binary search (ids increase strictly along the sequence); ErrNotFound
// when there is none.
func (s *BoltStore) SeqOfID(id ulid.ULID) (uint64, error) {
	seq, _, err := s.search("find an event by id", func(seq uint64, v []byte) (bool, error) {
		eid, ok := envelopeID(v)
		if !ok {
			return false, fmt.Errorf("event %d: %w", seq, ErrMalformed)
		}
		return eid.Compare(id) >= 0, nil
	})
	if err != nil {
		return 0, err
	}
	if head, _ := s.Head(); seq > head {
		return 0, fmt.Errorf("event %s: %w", id, ErrNotFound)
	}
	e, err := s.Get(seq)
	if err != nil {
		return 0, err
	}
	if e.ID != id {
		return 0, fmt.Errorf("event %s: %w", id, ErrNotFound)
	}
	return seq, nil
}

// Postings calls fn with the sequence of each acknowledged event indexed
// under term, in [from, to] (to 0: Head), ascending or descending. It
// fails with ErrNoIndex while the index is not Ready. The events the index
// does not cover yet (at most maxIndexLag, past its "through") are
// scanned. fn's error ends the walk and is returned as it is.
func (s *BoltStore) Postings(term string, from, to uint64, reverse bool, fn func(seq uint64) error) error {
	if err := s.notReady(); err != nil {
		return err
	}
	head, _ := s.Head()
	from, to, ok := clampRange(from, to, head)
	if !ok {
		return nil
	}
	var userErr error
	emit := func(seq uint64) error {
		if err := callUserFunc(func() error { return fn(seq) }); err != nil {
			userErr = err
			return err
		}
		return nil
	}
	err := s.view("read the index", func(tx *bolt.Tx) error {
		through := indexedThrough(tx)
		var tail []uint64 // the matches past through, ascending
		if to > through {
			err := s.scanTail(tx, max(from, through+1), to, func(seq uint64, terms []string) {
				if _, ok := slices.BinarySearch(terms, term); ok {
					tail = append(tail, seq)
				}
			})
			if err != nil {
				return err
			}
		}
		if reverse {
			for i := len(tail) - 1; i >= 0; i-- {
				if err := emit(tail[i]); err != nil {
					return err
				}
			}
		}
		if b := tx.Bucket(bucketIndex); b != nil && from <= through {
			if err := walkPostings(b.Cursor(), term, from, min(to, through), reverse, emit); err != nil {
				return err
			}
		}
		if !reverse {
			for _, seq := range tail {
				if err := emit(seq); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err == nil || err == userErr {
		return err
	}
	return s.readErr(err)
}

// indexedThrough is the index record's through in tx (0 without one).
func indexedThrough(tx *bolt.Tx) uint64 {
	if m := tx.Bucket(bucketMeta); m != nil {
		if r, ok := decodeIndexRecord(m.Get(keyIndex)); ok {
			return r.through
		}
	}
	return 0
}

// walkPostings calls emit for the keys of term with a sequence in [from,
// to], ascending or descending: one seek per epoch.
func walkPostings(c *bolt.Cursor, term string, from, to uint64, reverse bool, emit func(uint64) error) error {
	first, last := epochOf(from), epochOf(to)
	for i := uint64(0); i <= uint64(last-first); i++ {
		ep := first + uint32(i)
		if reverse {
			ep = last - uint32(i)
		}
		lo, hi := max(from, epochFirst(ep)), min(to, epochFirst(ep+1)-1)
		prefix := append(binary.BigEndian.AppendUint32(nil, ep), term...)
		prefix = append(prefix, 0)
		visit := func(k []byte) (bool, error) {
			if !bytes.HasPrefix(k, prefix) || len(k) != len(prefix)+8 {
				return false, nil
			}
			seq := binary.BigEndian.Uint64(k[len(prefix):])
			if seq < lo || seq > hi {
				return false, nil
			}
			return true, emit(seq)
		}
		if !reverse {
			for k, _ := c.Seek(postingKey(nil, term, lo)); k != nil; k, _ = c.Next() {
				if more, err := visit(k); err != nil {
					return err
				} else if !more {
					break
				}
			}
			continue
		}
		k, _ := c.Seek(binary.BigEndian.AppendUint64(slices.Clone(prefix), hi+1))
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
		for ; k != nil; k, _ = c.Prev() {
			if more, err := visit(k); err != nil {
				return err
			} else if !more {
				break
			}
		}
	}
	return nil
}

// scanTail calls fn with the terms of each event in [from, to] (those the
// index does not cover yet).
func (s *BoltStore) scanTail(tx *bolt.Tx, from, to uint64, fn func(seq uint64, terms []string)) error {
	b := tx.Bucket(bucketEvents)
	if b == nil {
		return nil
	}
	c := b.Cursor()
	var e Envelope
	for k, v := c.Seek(seqKey(from)); k != nil; k, v = c.Next() {
		seq := ne64(k)
		if seq > to || seq == 0 {
			break
		}
		if err := decodeInto(&e, v, false); err != nil {
			return fmt.Errorf("event %d: %w", seq, err)
		}
		terms, err := safeTerms(s.opt.Indexer, seq, e.Type, e.Version, e.Cause.Op, e.Payload)
		if err != nil {
			return err
		}
		fn(seq, terms)
	}
	return nil
}

// Terms calls fn for each distinct indexed term that starts with prefix,
// in byte order (the events the index does not cover yet are scanned). It
// fails with ErrNoIndex while the index is not Ready.
func (s *BoltStore) Terms(prefix string, fn func(term string) error) error {
	if err := s.notReady(); err != nil {
		return err
	}
	head, _ := s.Head()
	var userErr error
	emit := func(t string) error {
		if err := callUserFunc(func() error { return fn(t) }); err != nil {
			userErr = err
			return err
		}
		return nil
	}
	err := s.view("read the index", func(tx *bolt.Tx) error {
		through := indexedThrough(tx)
		set := map[string]bool{}
		if head > through {
			if err := s.scanTail(tx, through+1, head, func(_ uint64, terms []string) {
				for _, t := range terms {
					if strings.HasPrefix(t, prefix) {
						set[t] = true
					}
				}
			}); err != nil {
				return err
			}
		}
		tail := slices.Sorted(maps.Keys(set))
		// Merge the index's terms with the tail's, in order.
		i := 0
		if b := tx.Bucket(bucketTerms); b != nil && through > 0 {
			c := b.Cursor()
			for k, _ := c.Seek([]byte(prefix)); k != nil; k, _ = c.Next() {
				if !bytes.HasPrefix(k, []byte(prefix)) {
					break
				}
				t := string(k)
				for ; i < len(tail) && tail[i] < t; i++ {
					if err := emit(tail[i]); err != nil {
						return err
					}
				}
				if i < len(tail) && tail[i] == t {
					i++
				}
				if err := emit(t); err != nil {
					return err
				}
			}
		}
		for ; i < len(tail); i++ {
			if err := emit(tail[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil || err == userErr {
		return err
	}
	return s.readErr(err)
}

// indexCutKeys returns, in Recover's transaction, the index keys of the
// events past ack (a failed commit that reached the file), from their
// terms; when one of them cannot be read, every key past ack of every
// term.
func (s *BoltStore) indexCutKeys(tx *bolt.Tx, ack uint64) [][]byte {
	ib, eb := tx.Bucket(bucketIndex), tx.Bucket(bucketEvents)
	if ib == nil || eb == nil {
		return nil
	}
	var keys [][]byte
	c := eb.Cursor()
	for k, v := c.Seek(seqKey(ack + 1)); k != nil; k, v = c.Next() {
		e, err := decodeEnvelope(v, false)
		var terms []string
		if err == nil {
			terms, err = safeTerms(s.opt.Indexer, e.Seq, e.Type, e.Version, e.Cause.Op, e.Payload)
		}
		if err != nil {
			return allKeysAfter(ib, ack)
		}
		keys = postingKeys(keys, terms, ne64(k))
	}
	return keys
}

// allKeysAfter collects every index key of a sequence past ack: they lie
// in the epochs from ack's on.
func allKeysAfter(b *bolt.Bucket, ack uint64) [][]byte {
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(binary.BigEndian.AppendUint32(nil, epochOf(ack+1))); k != nil; k, _ = c.Next() {
		if _, seq, ok := splitPosting(k); ok && seq > ack {
			keys = append(keys, append([]byte(nil), k...))
		}
	}
	return keys
}

// indexCut deletes, in Recover's transaction, the index keys and retained
// states of the events past ack, and records the index as it was
// acknowledged.
func (s *BoltStore) indexCut(tx *bolt.Tx, keys [][]byte, ack uint64) error {
	if b := tx.Bucket(bucketIndex); b != nil {
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return fmt.Errorf("index: %w", err)
			}
		}
	}
	if err := deleteStatesAfter(tx, ack); err != nil {
		return err
	}
	s.mu.Lock()
	present, rec := s.idx.present, indexRecord{version: s.idx.version, through: min(s.idx.through, ack)}
	s.mu.Unlock()
	if !present || s.opt.ReadOnly {
		return nil
	}
	return tx.Bucket(bucketMeta).Put(keyIndex, encodeIndexRecord(rec))
}

// callUserFunc runs a caller's callback inside a guarded section, marking
// its panics as the caller's.
func callUserFunc(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			panic(userPanic{r})
		}
	}()
	return fn()
}
