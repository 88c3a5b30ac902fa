package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	bolt "go.etcd.io/bbolt"
)

// rewriteCompacted writes to tmp a copy of the journal without what ck
// replaces: events <= ck.Seq, index entries whose key ends in a sequence
// <= ck.Seq, retained states at or before ck.Seq. Every other bucket
// (nested ones too), key and bucket sequence is copied as it is, and the
// checkpoint is put in meta. The caller holds the writer's lock, so the
// journal does not change meanwhile; events past head are left out.
func (s *BoltStore) rewriteCompacted(tmp string, ck *Checkpoint, head uint64) error {
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	// Mapped at the old file's size from the start: a remap in a write
	// transaction copies every node it holds (bbolt's dereference).
	mmap := 0
	if fi, err := os.Stat(s.path); err == nil && fi.Size() < 1<<30 {
		mmap = int(fi.Size())
	}
	var dst *bolt.DB
	if err := guard(tmp, "open", nil, func() (err error) {
		dst, err = bolt.Open(tmp, 0o600, &bolt.Options{Timeout: s.opt.LockTimeout, FreelistType: freelistType, NoSync: s.opt.NoSync, InitialMmapSize: mmap})
		return err
	}); err != nil {
		return err
	}
	c := &copier{db: dst, path: tmp}
	err := s.view("compact: copy", func(src *bolt.Tx) error {
		if err := c.begin(); err != nil {
			return err
		}
		err := src.ForEach(func(name []byte, b *bolt.Bucket) error {
			keep := keepAll
			switch {
			case bytes.Equal(name, bucketEvents):
				keep = func(k []byte) bool { seq := ne64(k); return len(k) == 8 && seq > ck.Seq && seq <= head }
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
		if err != nil {
			return err
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
		c.rollback()
	}
	// The file ends at the tree's high-water mark: bbolt grows a file in
	// steps of up to 16 MiB, and what was left of the last one is cut off.
	var size int64
	if err == nil {
		err = guard(tmp, "compact: size", nil, func() error {
			return dst.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil })
		})
	}
	if cerr := guard(tmp, "close", nil, dst.Close); err == nil {
		err = cerr
	}
	if err == nil {
		err = truncateSync(tmp, size)
	}
	return err
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
