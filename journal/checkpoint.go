package journal

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"
)

// keyCheckpoint is the meta key of the checkpoint (doc.go, "Compaction").
var keyCheckpoint = []byte("checkpoint")

var checkpointMagic = []byte("OVCK")

const checkpointVersion = 1

// ErrCompacted is returned (wrapping ErrNotFound too) for an event that
// compaction moved out of the journal into an archive.
var ErrCompacted = errors.New("journal: event compacted into an archive")

// ErrCheckpointCorrupt is returned for a checkpoint whose state or self
// hash does not check out.
var ErrCheckpointCorrupt = errors.New("journal: checkpoint corrupt")

// ArchiveRef names one archive file a checkpoint stands for.
type ArchiveRef struct {
	Name     string   `json:"name"` // file name inside the archive directory
	First    uint64   `json:"first_seq"`
	Last     uint64   `json:"last_seq"`
	PrevHash [32]byte `json:"-"` // the hash the archive's first event links to
	LastHash [32]byte `json:"-"` // hash of event Last
	Hash     [32]byte `json:"-"` // the archive's digest (its trailer)
}

// Checkpoint replaces the events 1..Seq of a compacted journal: the hash
// of event Seq, to which event Seq+1 links, and the projection state at
// Seq. It lives in the meta bucket.
type Checkpoint struct {
	Journal ID
	Seq     uint64    // the last archived event
	Hash    [32]byte  // its hash
	LastID  ulid.ULID // its id
	Time    time.Time // its time
	// Compacted is when the compaction ran.
	Compacted time.Time
	// Schema and State: the projected state at Seq (projections'
	// snapshot codec) and its SHA-256.
	Schema    uint32
	State     []byte
	StateHash [32]byte
	// Archives, oldest first: together they hold events 1..Seq, each
	// linking to the one before.
	Archives []ArchiveRef
	// SelfHash is the SHA-256 of every other field as encoded.
	SelfHash [32]byte
}

// Archive is the newest archive (the one this compaction wrote).
func (c *Checkpoint) Archive() ArchiveRef {
	if len(c.Archives) == 0 {
		return ArchiveRef{}
	}
	return c.Archives[len(c.Archives)-1]
}

// archiveOf is the archive holding event seq ("" if none does).
func (c *Checkpoint) archiveOf(seq uint64) string {
	for _, a := range c.Archives {
		if seq >= a.First && seq <= a.Last {
			return a.Name
		}
	}
	return ""
}

// compactedErr is the error for a read of event seq <= c.Seq.
func (c *Checkpoint) compactedErr(seq uint64) error {
	name := c.archiveOf(seq)
	if name == "" {
		name = "(none named)"
	}
	return fmt.Errorf("%w: event %d is compacted into archive %s (the journal holds %d.. after its checkpoint at %d): %w",
		ErrCompacted, seq, name, c.Seq+1, c.Seq, ErrNotFound)
}

// encode returns the stored form and fills SelfHash.
//
//	[4]   magic "OVCK"
//	u8    version (1)
//	[16]  journal id
//	u64   sequence of the last archived event
//	[32]  its hash
//	[16]  its ULID
//	i64   its time, Unix nanoseconds
//	i64   when the compaction ran, Unix nanoseconds
//	u32   projection schema
//	[32]  SHA-256 of the state
//	u32   number of archives, then for each:
//	        str name, u64 first, u64 last, [32] prev hash, [32] last hash, [32] digest
//	str   the state (projections' snapshot codec)
//	[32]  SHA-256 of every preceding byte
func (c *Checkpoint) encode() []byte {
	b := append([]byte(nil), checkpointMagic...)
	b = append(b, checkpointVersion)
	b = append(b, c.Journal[:]...)
	b = binary.BigEndian.AppendUint64(b, c.Seq)
	b = append(b, c.Hash[:]...)
	b = append(b, c.LastID[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(c.Time.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(c.Compacted.UnixNano()))
	b = binary.BigEndian.AppendUint32(b, c.Schema)
	b = append(b, c.StateHash[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(c.Archives)))
	for _, a := range c.Archives {
		b = appendStr(b, a.Name)
		b = binary.BigEndian.AppendUint64(b, a.First)
		b = binary.BigEndian.AppendUint64(b, a.Last)
		b = append(b, a.PrevHash[:]...)
		b = append(b, a.LastHash[:]...)
		b = append(b, a.Hash[:]...)
	}
	b = binary.AppendUvarint(b, uint64(len(c.State)))
	b = append(b, c.State...)
	c.SelfHash = sha256.Sum256(b)
	return append(b, c.SelfHash[:]...)
}

// decodeCheckpoint parses a stored checkpoint. A value that does not parse
// is an error; one that parses but whose hashes do not check out is
// returned with Check's findings left to the caller (CheckIntegrity).
func decodeCheckpoint(v []byte) (*Checkpoint, error) {
	if len(v) < 5 || !bytes.Equal(v[:4], checkpointMagic) {
		return nil, fmt.Errorf("%w: bad header", ErrCheckpointCorrupt)
	}
	if v[4] != checkpointVersion {
		return nil, fmt.Errorf("%w: version %d, this build reads %d", ErrCheckpointCorrupt, v[4], checkpointVersion)
	}
	r := reader{b: v[5:]}
	c := &Checkpoint{}
	copy(c.Journal[:], r.take(16))
	c.Seq = binary.BigEndian.Uint64(r.take(8))
	copy(c.Hash[:], r.take(32))
	copy(c.LastID[:], r.take(16))
	c.Time = time.Unix(0, int64(binary.BigEndian.Uint64(r.take(8))))
	c.Compacted = time.Unix(0, int64(binary.BigEndian.Uint64(r.take(8))))
	c.Schema = binary.BigEndian.Uint32(r.take(4))
	copy(c.StateHash[:], r.take(32))
	n := binary.BigEndian.Uint32(r.take(4))
	if r.err == nil && uint64(n) > uint64(len(r.b)) {
		return nil, fmt.Errorf("%w: %d archives in %d bytes", ErrCheckpointCorrupt, n, len(r.b))
	}
	for i := uint32(0); i < n && r.err == nil; i++ {
		var a ArchiveRef
		a.Name = string(r.bytes())
		a.First = binary.BigEndian.Uint64(r.take(8))
		a.Last = binary.BigEndian.Uint64(r.take(8))
		copy(a.PrevHash[:], r.take(32))
		copy(a.LastHash[:], r.take(32))
		copy(a.Hash[:], r.take(32))
		c.Archives = append(c.Archives, a)
	}
	c.State = append([]byte(nil), r.bytes()...)
	copy(c.SelfHash[:], r.take(32))
	if r.err != nil {
		return nil, fmt.Errorf("%w: truncated field", ErrCheckpointCorrupt)
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrCheckpointCorrupt, len(r.b))
	}
	return c, nil
}

// CheckIntegrity checks the checkpoint's own hashes: the state against
// StateHash, then every field against SelfHash. The error names the
// checkpoint by its sequence ("checkpoint at 900000: state does not match
// its hash").
func (c *Checkpoint) CheckIntegrity() error {
	if sum := sha256.Sum256(c.State); sum != c.StateHash {
		return fmt.Errorf("%w: checkpoint at %d: state does not match its hash (%x…, stored %x…)", ErrCheckpointCorrupt, c.Seq, sum[:6], c.StateHash[:6])
	}
	self := c.SelfHash
	cp := *c
	cp.encode()
	if cp.SelfHash != self {
		return fmt.Errorf("%w: checkpoint at %d: its fields do not match its self-hash (%x…, stored %x…)", ErrCheckpointCorrupt, c.Seq, cp.SelfHash[:6], self[:6])
	}
	return nil
}

// Checkpointer is a Store that may have been compacted.
type Checkpointer interface {
	// Checkpoint is the journal's checkpoint, nil when it was never
	// compacted.
	Checkpoint() *Checkpoint
}

// CheckpointOf returns store's checkpoint (nil when it has none, or the
// store cannot be compacted). A Faulty is looked through.
func CheckpointOf(store Store) *Checkpoint {
	switch s := store.(type) {
	case Checkpointer:
		return s.Checkpoint()
	case *Faulty:
		return CheckpointOf(s.Inner())
	}
	return nil
}

// Checkpoint returns a copy of the journal's checkpoint, nil when it was
// never compacted.
func (s *BoltStore) Checkpoint() *Checkpoint {
	s.mu.Lock()
	c := s.ckpt
	s.mu.Unlock()
	if c == nil {
		return nil
	}
	cp := *c
	cp.Archives = append([]ArchiveRef(nil), c.Archives...)
	return &cp
}

// readCheckpoint reads the checkpoint in tx's meta bucket (nil: none).
func readCheckpoint(tx *bolt.Tx) (*Checkpoint, error) {
	m := tx.Bucket(bucketMeta)
	if m == nil {
		return nil, nil
	}
	v := m.Get(keyCheckpoint)
	if v == nil {
		return nil, nil
	}
	c, err := decodeCheckpoint(v)
	if err != nil {
		return nil, fmt.Errorf("the checkpoint (meta %q) cannot be read: %w", keyCheckpoint, err)
	}
	return c, nil
}

// RawUpdateMeta rewrites the meta value key of the journal file at path
// with fn's result (nil: leave it): for tests and tools that tamper with a
// checkpoint, never for the daemon.
func RawUpdateMeta(path string, key string, fn func(v []byte) []byte) error {
	var db *bolt.DB
	if err := guard(path, "open", nil, func() (err error) {
		db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
		return err
	}); err != nil {
		return err
	}
	defer db.Close()
	return guard(path, "raw update", nil, func() error {
		return db.Update(func(tx *bolt.Tx) error {
			m := tx.Bucket(bucketMeta)
			if m == nil {
				return ErrNotFound
			}
			nv := fn(append([]byte(nil), m.Get([]byte(key))...))
			if nv == nil {
				return nil
			}
			return m.Put([]byte(key), nv)
		})
	})
}

// adoptCheckpoint takes the checkpoint found at Open: it must belong to
// this journal, and the first event left must follow it (the rest of the
// chain is Verify's).
func (s *BoltStore) adoptCheckpoint(ck *Checkpoint, last *Envelope, hasID bool, id ID) error {
	switch {
	case !hasID || ck.Journal != id:
		return &DamageError{Path: s.path, Op: "open", Page: -1,
			Msg: fmt.Sprintf("the checkpoint at %d belongs to journal %s, the file is journal %s", ck.Seq, ck.Journal, id)}
	case last != nil && last.Seq <= ck.Seq:
		return &DamageError{Path: s.path, Op: "open", Page: -1,
			Msg: fmt.Sprintf("the last event is %d, at or before the checkpoint at %d", last.Seq, ck.Seq)}
	}
	s.mu.Lock()
	s.ckpt = ck
	s.mu.Unlock()
	return nil
}
