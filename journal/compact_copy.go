package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// rewrite is the compacted copy of the journal being built in tmp: a
// bulk copy made while commits go on (startRewrite), then, commits held,
// the commits since (finishRewrite).
type rewrite struct {
	tmp  string
	db   *bolt.DB
	c    *copier
	upTo uint64 // events copied: ck.Seq+1..upTo
	// upToHash is the hash of event upTo in the bulk copy: a commit that
	// failed after reaching the file may be in it, and after Recover new
	// events take its sequence numbers.
	upToHash [32]byte
	// The index record at the bulk copy: whether there is one (or no
	// index at all), and how far it reached. Events after idxThrough may
	// have had their keys written since: the delta copies them by their
	// terms.
	idxComplete bool
	idxThrough  uint64
	// statesPut is BoltStore.statesPut before the bulk copy.
	statesPut uint64
}

// startRewrite makes the bulk copy into tmp (commits go on meanwhile):
// the journal as of one read transaction, without what ck replaces:
// events <= ck.Seq, index entries whose key ends in a sequence <= ck.Seq,
// retained states at or before ck.Seq. Every other bucket (nested ones
// too), key and bucket sequence is copied as it is.
func (s *BoltStore) startRewrite(tmp string, ck *Checkpoint) (*rewrite, error) {
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	// Mapped at the old file's size from the start: a remap in a write
	// transaction copies every node it holds (bbolt's dereference).
	mmap := 0
	if fi, err := os.Stat(s.path); err == nil && fi.Size() < 1<<30 {
		mmap = int(fi.Size())
	}
	rw := &rewrite{tmp: tmp}
	if err := guard(tmp, "open", nil, func() (err error) {
		rw.db, err = bolt.Open(tmp, 0o600, &bolt.Options{Timeout: s.opt.LockTimeout, FreelistType: freelistType, NoSync: s.opt.NoSync, InitialMmapSize: mmap})
		return err
	}); err != nil {
		return nil, err
	}
	rw.c = &copier{db: rw.db, path: tmp}
	s.mu.Lock()
	indexOn := s.idx.on
	rw.statesPut = s.statesPut
	s.mu.Unlock()
	err := s.view("compact: copy", func(src *bolt.Tx) error {
		m := src.Bucket(bucketMeta)
		if m == nil {
			return errors.New("the meta bucket is missing")
		}
		h := decodeHead(m.Get(keyHead))
		if h == nil {
			return errors.New("the journal has no head record")
		}
		rw.upTo, rw.upToHash = h.seq, h.hash
		rec, present := decodeIndexRecord(m.Get(keyIndex))
		rw.idxComplete = !indexOn || present
		rw.idxThrough = min(rec.through, h.seq)
		if err := rw.c.begin(); err != nil {
			return err
		}
		if err := s.copyAll(rw.c, src, ck, rw.upTo); err != nil {
			return err
		}
		return rw.c.commit()
	})
	if err != nil {
		rw.abort()
		return nil, err
	}
	return rw, nil
}

// copyAll copies every bucket of src into c, events up to upTo.
func (s *BoltStore) copyAll(c *copier, src *bolt.Tx, ck *Checkpoint, upTo uint64) error {
	return src.ForEach(func(name []byte, b *bolt.Bucket) error {
		keep := keepAll
		switch {
		case bytes.Equal(name, bucketEvents):
			keep = func(k []byte) bool { seq := ne64(k); return len(k) == 8 && seq > ck.Seq && seq <= upTo }
		case bytes.Equal(name, bucketIndex):
			keep = func(k []byte) bool { return len(k) < 8 || binary.BigEndian.Uint64(k[len(k)-8:]) > ck.Seq }
		case bytes.Equal(name, bucketStates):
			keep = func(k []byte) bool { return len(k) != 8 || ne64(k) > ck.Seq }
		}
		var from []byte
		if bytes.Equal(name, bucketEvents) {
			from = seqKey(ck.Seq + 1)
		}
		return c.bucket([][]byte{name}, b, keep, from)
	})
}

// finishRewrite completes the copy with what was committed since the bulk
// copy, up to head, puts the checkpoint in meta, and syncs and closes
// the file. The caller holds the writer's lock, so the journal does not
// change meanwhile. The commits since are copied by what they wrote:
// their events, their index keys (the terms of each event, as the commit
// computed them), the retained states after the bulk copy, all of meta,
// and every bucket the journal does not know by name in full; and the
// index keys written since the bulk copy for events it held (the indexer
// runs behind the commits). Compact brings the index up to the head just
// before the bulk copy, so those are few. Without an index record (an
// index being set up) the whole journal is copied again instead.
func (s *BoltStore) finishRewrite(rw *rewrite, ck *Checkpoint, head uint64) error {
	c := rw.c
	err := s.view("compact: copy the last commits", func(src *bolt.Tx) error {
		if !rw.idxComplete || rw.upTo > head || !sameEvent(src, rw.upTo, rw.upToHash) {
			// Start over, all of it now.
			rw.abort()
			fresh, err := s.startRewriteAt(rw.tmp)
			if err != nil {
				return err
			}
			*rw = *fresh
			c = rw.c
			if err := c.begin(); err != nil {
				return err
			}
			if err := s.copyAll(c, src, ck, head); err != nil {
				return err
			}
		} else {
			if err := c.begin(); err != nil {
				return err
			}
			s.mu.Lock()
			statesFrom := rw.upTo
			if s.statesPut != rw.statesPut {
				// A state was put since the bulk copy, maybe at an event
				// it holds: copy them all again.
				statesFrom = ck.Seq
			}
			s.mu.Unlock()
			if err := s.copyDelta(c, src, ck, rw.upTo, head, statesFrom, max(rw.idxThrough, ck.Seq)); err != nil {
				return err
			}
		}
		if err := c.put([][]byte{bucketMeta}, keyCheckpoint, ck.encode()); err != nil {
			return err
		}
		if s.faultHook != nil {
			if err := s.faultHook("compact-rewrite"); err != nil {
				return err
			}
		}
		return c.commit()
	})
	if err != nil {
		rw.abort()
		return err
	}
	// The file ends at the tree's high-water mark: bbolt grows a file in
	// steps of up to 16 MiB, and what was left of the last one is cut off.
	var size int64
	err = guard(rw.tmp, "compact: size", nil, func() error {
		return rw.db.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil })
	})
	if cerr := guard(rw.tmp, "close", nil, rw.db.Close); err == nil {
		err = cerr
	}
	rw.db = nil
	if err == nil {
		err = truncateSync(rw.tmp, size)
	}
	return err
}

// sameEvent reports whether src holds event seq with hash h (by the hash
// chain, every event before it is then the same too).
func sameEvent(src *bolt.Tx, seq uint64, h [32]byte) bool {
	b := src.Bucket(bucketEvents)
	if b == nil {
		return false
	}
	v := b.Get(seqKey(seq))
	if v == nil {
		return false
	}
	var e Envelope
	if err := decodeInto(&e, v, false); err != nil {
		return false
	}
	return e.Hash == h
}

// startRewriteAt opens an empty rewrite in tmp (the fallback of
// finishRewrite).
func (s *BoltStore) startRewriteAt(tmp string) (*rewrite, error) {
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	rw := &rewrite{tmp: tmp}
	if err := guard(tmp, "open", nil, func() (err error) {
		rw.db, err = bolt.Open(tmp, 0o600, &bolt.Options{Timeout: s.opt.LockTimeout, FreelistType: freelistType, NoSync: s.opt.NoSync})
		return err
	}); err != nil {
		return nil, err
	}
	rw.c = &copier{db: rw.db, path: tmp}
	return rw, nil
}

// copyDelta copies into c what the commits of events from+1..to wrote,
// and the retained states past statesFrom.
func (s *BoltStore) copyDelta(c *copier, src *bolt.Tx, ck *Checkpoint, from, to, statesFrom, idxFrom uint64) error {
	ev := src.Bucket(bucketEvents)
	if ev == nil {
		return errors.New("the events bucket is missing")
	}
	ib := src.Bucket(bucketIndex)
	var ic *bolt.Cursor
	if ib != nil {
		ic = ib.Cursor()
	}
	cur := ev.Cursor()
	var e Envelope
	// The terms of the events indexed since the bulk copy: the only ones
	// the terms bucket can have gained since (it is copied by them, not
	// again in full: it holds every distinct term of the journal).
	seen := map[string]bool{}
	// postings copies the index keys of event k (value v) that the
	// journal's index holds (what it does not hold is not in the copy
	// either), and notes its terms.
	postings := func(k, v []byte) error {
		if err := decodeInto(&e, v, false); err != nil {
			return fmt.Errorf("event %d: %w", ne64(k), err)
		}
		terms, err := s.rawTerms(&e)
		if err != nil {
			return fmt.Errorf("event %d: index terms: %w", e.Seq, err)
		}
		for _, t := range terms {
			seen[t] = true
		}
		for _, pk := range postingKeys(nil, terms, e.Seq) {
			if got, _ := ic.Seek(pk); !bytes.Equal(got, pk) {
				continue
			}
			if err := c.put([][]byte{bucketIndex}, pk, nil); err != nil {
				return err
			}
		}
		return nil
	}
	// Events the bulk copy holds but that were indexed only since (the
	// indexer runs behind the commits): their keys, not the events again.
	for k, v := cur.Seek(seqKey(idxFrom + 1)); ic != nil && k != nil && ne64(k) <= min(from, to); k, v = cur.Next() {
		if err := postings(k, v); err != nil {
			return err
		}
	}
	for k, v := cur.Seek(seqKey(from + 1)); k != nil && ne64(k) <= to; k, v = cur.Next() {
		if err := c.put([][]byte{bucketEvents}, k, v); err != nil {
			return err
		}
		if ic == nil {
			continue
		}
		if err := postings(k, v); err != nil {
			return err
		}
	}
	if sb := src.Bucket(bucketStates); sb != nil {
		sc := sb.Cursor()
		for k, v := sc.Seek(seqKey(max(statesFrom, ck.Seq) + 1)); k != nil; k, v = sc.Next() {
			if err := c.put([][]byte{bucketStates}, k, v); err != nil {
				return err
			}
		}
	}
	if tb := src.Bucket(bucketTerms); tb != nil {
		for _, t := range slices.Sorted(maps.Keys(seen)) {
			if tb.Get([]byte(t)) != nil {
				if err := c.put([][]byte{bucketTerms}, []byte(t), nil); err != nil {
					return err
				}
			}
		}
	}
	return src.ForEach(func(name []byte, b *bolt.Bucket) error {
		switch {
		case bytes.Equal(name, bucketEvents), bytes.Equal(name, bucketIndex), bytes.Equal(name, bucketStates), bytes.Equal(name, bucketTerms):
			return nil
		case !bytes.Equal(name, bucketMeta):
			// A bucket the journal does not know: copied again in full.
			if err := c.tx.DeleteBucket(name); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
				return err
			}
		}
		return c.bucket([][]byte{name}, b, keepAll, nil)
	})
}

func (rw *rewrite) abort() {
	if rw.c != nil {
		rw.c.rollback()
	}
	if rw.db != nil {
		_ = guard(rw.tmp, "close", nil, rw.db.Close)
		rw.db = nil
	}
	os.Remove(rw.tmp)
}

// truncateSync cuts the file at path to size bytes (when it is longer)
// and syncs it.
func truncateSync(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err == nil && size > 0 && fi.Size() > size {
		err = f.Truncate(size)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func keepAll([]byte) bool { return true }

// copier writes into a new bbolt file in transactions of at most
// compactChunk puts.
type copier struct {
	db   *bolt.DB
	path string
	tx   *bolt.Tx
	n    int
}

func (c *copier) begin() (err error) {
	return guard(c.path, "compact: begin", nil, func() error {
		c.tx, err = c.db.Begin(true)
		return err
	})
}

func (c *copier) commit() error {
	if c.tx == nil {
		return nil
	}
	tx := c.tx
	c.tx = nil
	return guard(c.path, "compact: commit", nil, tx.Commit)
}

func (c *copier) rollback() {
	if c.tx != nil {
		_ = guard(c.path, "compact: rollback", nil, c.tx.Rollback)
		c.tx = nil
	}
}

// dst returns the bucket at path in the current transaction, creating it.
func (c *copier) dst(path [][]byte) (*bolt.Bucket, error) {
	b, err := c.tx.CreateBucketIfNotExists(path[0])
	for _, p := range path[1:] {
		if err != nil {
			break
		}
		b, err = b.CreateBucketIfNotExists(p)
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %q: %w", bytes.Join(path, []byte("/")), err)
	}
	// Keys arrive in order: fill the pages.
	b.FillPercent = 1.0
	return b, nil
}

// tick counts a put and commits every compactChunk of them.
func (c *copier) tick() error {
	c.n++
	if c.n%compactChunk != 0 {
		return nil
	}
	if err := c.commit(); err != nil {
		return err
	}
	return c.begin()
}

func (c *copier) put(path [][]byte, k, v []byte) error {
	b, err := c.dst(path)
	if err != nil {
		return err
	}
	return b.Put(k, v)
}

// bucket copies src (at path) and its nested buckets, the keys keep
// accepts, starting at from (nil: the first key).
func (c *copier) bucket(path [][]byte, src *bolt.Bucket, keep func([]byte) bool, from []byte) error {
	d, err := c.dst(path)
	if err != nil {
		return err
	}
	if err := d.SetSequence(src.Sequence()); err != nil {
		return err
	}
	cur := src.Cursor()
	var k, v []byte
	if from != nil {
		k, v = cur.Seek(from)
	} else {
		k, v = cur.First()
	}
	for ; k != nil; k, v = cur.Next() {
		if v == nil { // a nested bucket
			sub := src.Bucket(k)
			if sub == nil {
				continue
			}
			np := append(append([][]byte(nil), path...), append([]byte(nil), k...))
			if err := c.bucket(np, sub, keep, nil); err != nil {
				return err
			}
			if d, err = c.dst(path); err != nil {
				return err
			}
			continue
		}
		if !keep(k) {
			continue
		}
		if err := d.Put(k, v); err != nil {
			return fmt.Errorf("bucket %q: %w", bytes.Join(path, []byte("/")), err)
		}
		before := c.tx
		if err := c.tick(); err != nil {
			return err
		}
		if c.tx != before {
			if d, err = c.dst(path); err != nil {
				return err
			}
		}
	}
	return nil
}

// rawTerms are the index terms of e, when this store writes an index (nil
// otherwise): the posting keys a compaction carries over for it.
func (s *BoltStore) rawTerms(e *Envelope) ([]string, error) {
	s.mu.Lock()
	on := s.idx.on
	s.mu.Unlock()
	if !on {
		return nil, nil
	}
	return safeTerms(s.opt.Indexer, e.Seq, e.Type, e.Version, e.Cause.Op, e.Payload)
}
