package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// The buckets and meta keys (doc.go, "File layout").
var (
	bucketMeta   = []byte("meta")
	bucketEvents = []byte("events")
	keyFormat    = []byte("format")
	keyID        = []byte("id")
	keyLegacy    = []byte("legacy")
	keyHead      = []byte("head")
	keyDiscarded = []byte("discarded")
)

// freelistType is bbolt's freelist for every open. The hash map one
// allocates pages in map order (random); tests that need a file that is a
// function of their seed set the array one.
var freelistType = bolt.FreelistMapType

// maxDiscardMarks bounds the meta "discarded" record (the newest are kept).
const maxDiscardMarks = 64

// FileName is the journal file's name inside its directory.
const FileName = "journal.db"

// Options tune a BoltStore.
type Options struct {
	// ReadOnly opens the file with a shared lock and refuses writes.
	ReadOnly bool
	// LockTimeout bounds the wait for the file lock (default 1 s).
	LockTimeout time.Duration
	// MaxBatch bounds the records committed in one transaction (default 4096).
	MaxBatch int
	// NoSync disables fsync: for benchmarks of everything but the disk.
	NoSync bool
	// CreateWithID gives a journal created by this Open the id *CreateWithID
	// instead of a random one (repair keeps the id of the journal it
	// rebuilds). Open fails if the file already has another id, or holds
	// events without one.
	CreateWithID *ID
	// CreateLegacy, with CreateWithID, marks the created journal Legacy.
	CreateLegacy bool
	// RecoverDrain bounds how long Recover waits for reads in flight before
	// it gives up (default 5 s).
	RecoverDrain time.Duration
	// Clock and Entropy, when set, replace the wall clock and crypto/rand
	// for the events' times and ids: for tests that need byte-identical
	// files from a seed.
	Clock   func() time.Time
	Entropy io.Reader

	// Indexer names the objects an event touches, as index terms (for
	// example "ip:10.200.3.7", "service:web"): projections.Terms. nil:
	// only the built-in terms ("type:", "op:"). It must be a pure
	// function of its arguments, safe for concurrent use: it runs on the
	// store's indexer goroutine and in index reads (doc.go, "Indexes").
	Indexer func(typ string, ver uint16, payload []byte) []string
	// IndexVersion is the Indexer's version: a journal indexed with
	// another version is re-indexed by a writable Open (migration).
	IndexVersion uint32
	// IndexBatch bounds the events one indexing transaction indexes
	// (default 5000: a batch holds commits back for tens of ms).
	IndexBatch int
}

// BoltStore is the durable journal in one bbolt file.
//
// Every call into bbolt runs under guard: a damaged file gives errors
// wrapping ErrDamaged, never a panic. After a failed commit, or damage
// found by any call, the store is read-only (Health) until Recover
// succeeds; reads keep working and never return an event past the last
// acknowledged one (Head). All methods are safe for concurrent use.
type BoltStore struct {
	path  string
	opt   Options // with the defaults filled in
	ident Identity

	// The bbolt handle. Recover swaps it; readers count themselves on it
	// so that Recover closes it only once they are done.
	hmu        sync.Mutex
	hcond      *sync.Cond
	h          *handle
	herr       error // why there is no handle
	recovering bool
	// inherit is the descriptor of a stuck handle: its mapping keeps the
	// file's lock, so the next open goes through a duplicate of it.
	inherit *os.File

	wmu       sync.Mutex // held by the writer while it commits; Check, Recover and Compact take it for a quiet file
	recMu     sync.Mutex // one Recover at a time
	compactMu sync.Mutex // one Compact at a time

	queue  chan item
	done   chan struct{}
	sendMu sync.RWMutex // held to send on queue; Close takes it to close queue

	mu       sync.Mutex // guards what follows
	headSeq  uint64
	headHash [32]byte
	failed   error // wraps ErrReadOnly and the cause; nil: writable
	since    time.Time
	epoch    uint64 // bumped by each failure: items appended before it fail
	closing  bool
	stats    Stats
	warnings []string      // found at open (a meta page that fails its checks)
	discard  []discardMark // failed commits, recorded in the file by Recover
	// ckpt is the checkpoint of a compacted journal (nil: never
	// compacted); Compact replaces it.
	ckpt *Checkpoint
	// checkedOK is when the last page check found nothing wrong: Verify
	// reuses it for a while (the check holds commits back while it runs).
	checkedOK time.Time
	// statesPut counts PutState's commits: a compaction copies every
	// retained state again when one was put since its bulk copy.
	statesPut uint64

	ids idSource // writer goroutine only

	idx indexState // the secondary index (index_bolt.go)

	// faultHook, when set (tests), is asked at each write: "commit"
	// (inside the transaction, after the puts; an error fails the
	// commit), "synced" (after the commit: an error fails it although it
	// reached the file, as a failed fsync does) and "recover" (Recover's
	// probe of the medium).
	faultHook func(op string) error

	commitHook // ObserveCommits (observe.go)
}

var _ Store = (*BoltStore)(nil)

// handle is one bbolt handle on the file.
type handle struct {
	db   *bolt.DB
	file *os.File // bbolt's descriptor: closed by hand if db is stuck
	// readers in flight; guarded by BoltStore.hmu.
	readers int
	// stuck: a panic inside bbolt may have left its locks held, so db
	// must not be called again (not even Close). Guarded by hmu.
	stuck    bool
	stuckErr error
}

func (h *handle) mapping() (uintptr, int) {
	i := h.db.Info()
	return i.Data, i.PageSize
}

type item struct {
	recs   []Record
	raw    [][]byte // encoded envelopes to store as they are (Rewrite)
	epoch  uint64
	commit *Commit
}

// Open opens (creating if needed) the journal at dir/journal.db. A second
// process opening the same file for writing gets ErrLocked.
func Open(dir string, opt Options) (*BoltStore, error) {
	if !opt.ReadOnly {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("journal: create %s: %w", dir, err)
		}
	}
	return OpenFile(filepath.Join(dir, FileName), opt)
}

// OpenFile is Open for a journal file at any path. Its snapshot is the
// file SnapshotFileName in the same directory.
//
// A missing file is created (not with ReadOnly). A file of 0 bytes is
// initialised as a new journal, and Identity().Fresh says so; opened
// ReadOnly it is an error. A file whose structure is damaged (truncated,
// a page that is not what its parent says) is refused with a
// *DamageError naming the page.
func OpenFile(path string, opt Options) (*BoltStore, error) {
	if opt.LockTimeout == 0 {
		opt.LockTimeout = time.Second
	}
	if opt.MaxBatch == 0 {
		opt.MaxBatch = 4096
	}
	if opt.RecoverDrain == 0 {
		opt.RecoverDrain = 5 * time.Second
	}
	fi, err := os.Stat(path)
	fresh := false
	switch {
	case errors.Is(err, os.ErrNotExist) && !opt.ReadOnly:
		fresh = true
	case err != nil:
		return nil, fmt.Errorf("journal: open %s: %w", path, err)
	case fi.Size() == 0 && opt.ReadOnly:
		return nil, fmt.Errorf("journal: %s is empty (0 bytes): it holds no journal (a new one is only created by a writable open)", path)
	case fi.Size() == 0:
		fresh = true
	}
	s := &BoltStore{path: path, opt: opt}
	s.hcond = sync.NewCond(&s.hmu)
	s.ids.clock, s.ids.random = opt.Clock, opt.Entropy
	h, err := s.openHandle()
	if err != nil {
		return nil, err
	}
	s.h = h
	if err := s.initialise(h, fresh); err != nil {
		s.closeHandle(h)
		return nil, err
	}
	for _, w := range s.warnings {
		slog.Warn("journal: "+w, "file", path)
	}
	s.initIndex(h)
	if !opt.ReadOnly {
		s.queue = make(chan item, 1024)
		s.done = make(chan struct{})
		go s.writer()
	}
	return s, nil
}

// openHandle opens the file with bbolt. Inside bbolt's Open, before bbolt
// reads anything, the file is locked and its structure walked (checkFile,
// quick): bbolt never maps a file whose pages it would fault on.
func (s *BoltStore) openHandle() (*handle, error) { return s.openHandleAt(s.path) }

// openHandleAt is openHandle for the file at path (Compact opens the
// rewritten file before it is renamed over s.path).
func (s *BoltStore) openHandleAt(path string) (*handle, error) {
	h := &handle{}
	var layoutErr error
	bopt := &bolt.Options{
		Timeout:  s.opt.LockTimeout,
		ReadOnly: s.opt.ReadOnly,
		// The freelist is synced with each commit: opening a large journal
		// then does not scan every page (measured: 1M events, 210 MiB,
		// ready in 87 ms instead of 126 ms), at no measurable commit cost.
		NoFreelistSync: false,
		FreelistType:   freelistType,
		NoSync:         s.opt.NoSync,
		OpenFile: func(name string, flag int, mode os.FileMode) (*os.File, error) {
			var f *os.File
			var err error
			if s.inherit != nil {
				f, err = dupFile(s.inherit)
			} else {
				f, err = os.OpenFile(name, flag, mode)
			}
			if err != nil {
				return nil, err
			}
			if err := lockFile(f, !s.opt.ReadOnly, s.opt.LockTimeout); err != nil {
				f.Close()
				return nil, err
			}
			fi, err := f.Stat()
			if err != nil {
				f.Close()
				return nil, err
			}
			if fi.Size() > 0 {
				l, problems := checkFile(f, fi.Size(), false)
				if len(problems) > 0 {
					f.Close()
					layoutErr = &DamageError{Path: path, Op: "open", Page: pageOf(problems[0]), Msg: joinProblems(problems)}
					return nil, layoutErr
				}
				s.mu.Lock()
				s.warnings = l.warnings
				s.mu.Unlock()
			}
			h.file = f
			return f, nil
		},
	}
	returned := false
	err := guard(s.path, "open", nil, func() (err error) {
		h.db, err = bolt.Open(path, 0o600, bopt)
		returned = true
		return err
	})
	if err != nil {
		if !returned && h.file != nil {
			// bbolt panicked with the file open and locked: release it.
			// (Its mapping, if any, cannot be released without the DB.)
			h.file.Close()
		}
		switch {
		case layoutErr != nil:
			return nil, layoutErr
		case errors.Is(err, bolterrors.ErrTimeout):
			return nil, lockedError(s.path, "is another zlayer-overlayd running on this data dir?")
		case IsDamage(err):
			return nil, err
		case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrChecksum), errors.Is(err, bolterrors.ErrVersionMismatch):
			return nil, &DamageError{Path: s.path, Op: "open", Page: -1, Msg: err.Error()}
		}
		return nil, fmt.Errorf("journal: open %s: %w", s.path, err)
	}
	if s.inherit != nil {
		s.inherit.Close() // the new handle holds the description now
		s.inherit = nil
	}
	return h, nil
}

func joinProblems(p []string) string {
	switch len(p) {
	case 0:
		return ""
	case 1:
		return p[0]
	}
	return fmt.Sprintf("%s (and %d more problem(s))", p[0], len(p)-1)
}

// initialise reads (and on a writable open, creates) the buckets, the
// journal id and the head.
func (s *BoltStore) initialise(h *handle, fresh bool) error {
	var (
		hasID, hasEvents, needWrite bool
		format                      uint32
		id                          ID
		legacy                      bool
		last                        *Envelope
		metaHead                    *headRecord
		ckpt                        *Checkpoint
	)
	err := s.viewOn(h, "read the journal's identity", func(tx *bolt.Tx) error {
		m, b := tx.Bucket(bucketMeta), tx.Bucket(bucketEvents)
		needWrite = m == nil || b == nil
		if m != nil {
			if v := m.Get(keyFormat); len(v) == 4 {
				format = binary.BigEndian.Uint32(v)
			}
			if v := m.Get(keyID); len(v) == len(id) {
				hasID = true
				copy(id[:], v)
			}
			legacy = m.Get(keyLegacy) != nil
			metaHead = decodeHead(m.Get(keyHead))
		}
		var err error
		if ckpt, err = readCheckpoint(tx); err != nil {
			return err
		}
		if b != nil {
			k, v := b.Cursor().Last()
			if k != nil {
				hasEvents = true
				e, err := decodeEnvelope(v, false)
				if err != nil {
					return fmt.Errorf("last event %d: %w", binary.BigEndian.Uint64(k), err)
				}
				last = e
				// The envelope aliases the mapping: keep only what is needed.
				last.Payload = nil
			}
		}
		return nil
	})
	if err != nil {
		return s.wrapRead("open", err)
	}
	if format != 0 && format != formatVersion {
		return fmt.Errorf("journal: %s has file format %d, this build reads %d", s.path, format, formatVersion)
	}
	if c := s.opt.CreateWithID; c != nil {
		switch {
		case hasID && id != *c:
			return fmt.Errorf("journal: %s already has journal id %s, not %s", s.path, id, *c)
		case !hasID && hasEvents:
			return fmt.Errorf("journal: %s holds events written before journal ids: it cannot be given id %s", s.path, *c)
		}
	}
	if ckpt != nil {
		if err := s.adoptCheckpoint(ckpt, last, hasID, id); err != nil {
			return err
		}
	}
	if last == nil && ckpt != nil {
		// Compacted up to its head: the checkpoint is the head.
		last = &Envelope{Seq: ckpt.Seq, Hash: ckpt.Hash, ID: ckpt.LastID}
	}
	if last != nil {
		if metaHead != nil && metaHead.seq > last.Seq {
			return &DamageError{Path: s.path, Op: "open", Page: -1,
				Msg: fmt.Sprintf("the journal's head is event %d but its last event is %d: events %d..%d are missing", metaHead.seq, last.Seq, last.Seq+1, metaHead.seq)}
		}
		if metaHead != nil && metaHead.seq == last.Seq && metaHead.hash != last.Hash {
			return &DamageError{Path: s.path, Op: "open", Page: -1,
				Msg: fmt.Sprintf("event %d has hash %x…, the journal's head record says %x…", last.Seq, last.Hash[:6], metaHead.hash[:6])}
		}
		s.headSeq, s.headHash = last.Seq, last.Hash
		s.ids.seed(last.ID)
	} else if metaHead != nil && metaHead.seq > 0 {
		return &DamageError{Path: s.path, Op: "open", Page: -1,
			Msg: fmt.Sprintf("the journal's head is event %d but it holds no events", metaHead.seq)}
	}
	s.ident = Identity{ID: id, Legacy: legacy, Fresh: fresh}
	if s.opt.ReadOnly {
		if !hasID && hasEvents {
			s.ident.Legacy = true // written before ids; the id is assigned at the next writable open
		}
		return nil
	}
	if hasID && !needWrite && format == formatVersion {
		return nil
	}
	if !hasID {
		switch {
		case hasEvents:
			id, legacy = NewID(), true
		case s.opt.CreateWithID != nil:
			id, legacy = *s.opt.CreateWithID, s.opt.CreateLegacy
		default:
			id = NewID()
		}
	}
	err = s.updateOn(h, "initialise", func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketEvents} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		m := tx.Bucket(bucketMeta)
		if err := m.Put(keyFormat, binary.BigEndian.AppendUint32(nil, formatVersion)); err != nil {
			return err
		}
		if err := m.Put(keyID, id[:]); err != nil {
			return err
		}
		if legacy {
			return m.Put(keyLegacy, []byte{1})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("journal: initialise %s: %w", s.path, err)
	}
	s.ident = Identity{ID: id, Legacy: legacy, Fresh: fresh}
	return nil
}

// headRecord is the meta "head" value: the last committed event, written
// in the same transaction as the event.
type headRecord struct {
	seq  uint64
	hash [32]byte
}

func encodeHead(seq uint64, hash [32]byte) []byte {
	return append(binary.BigEndian.AppendUint64(nil, seq), hash[:]...)
}

func decodeHead(v []byte) *headRecord {
	if len(v) != 8+32 {
		return nil
	}
	r := &headRecord{seq: binary.BigEndian.Uint64(v)}
	copy(r.hash[:], v[8:])
	return r
}

// Path is the journal file.
func (s *BoltStore) Path() string { return s.path }

// Identity returns the journal's id and how this Open found it.
func (s *BoltStore) Identity() Identity { return s.ident }

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// acquire returns the current handle, counted as in use until release.
// It waits while Recover swaps the handle.
func (s *BoltStore) acquire() (*handle, error) {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	for s.recovering {
		s.hcond.Wait()
	}
	h := s.h
	switch {
	case h == nil && s.herr != nil:
		return nil, s.herr
	case h == nil:
		return nil, ErrClosed
	case h.stuck:
		return nil, fmt.Errorf("journal: %s cannot be read any more until it is reopened (Recover): %w", s.path, h.stuckErr)
	}
	h.readers++
	return h, nil
}

func (s *BoltStore) release(h *handle) {
	s.hmu.Lock()
	h.readers--
	if h.readers == 0 {
		s.hcond.Broadcast()
	}
	s.hmu.Unlock()
}

// stick marks h unusable: a panic inside bbolt's Begin, Rollback or
// Commit may have left its locks held, so any later call could block for
// ever. The store goes read-only.
func (s *BoltStore) stick(h *handle, err error) {
	s.hmu.Lock()
	if !h.stuck {
		h.stuck, h.stuckErr = true, err
	}
	s.hmu.Unlock()
	s.fail(err, false)
}

// view runs fn in a read transaction on the current handle.
func (s *BoltStore) view(op string, fn func(*bolt.Tx) error) error {
	h, err := s.acquire()
	if err != nil {
		return err
	}
	defer s.release(h)
	return rethrow(s.viewOn(h, op, fn))
}

// begin starts a transaction on h, guarded; damage sticks the handle.
func (s *BoltStore) begin(h *handle, op string, writable bool) (*bolt.Tx, error) {
	var tx *bolt.Tx
	err := guard(s.path, op, h.mapping, func() (err error) {
		tx, err = h.db.Begin(writable)
		return err
	})
	if err != nil {
		if IsDamage(err) {
			s.stick(h, err)
			return nil, err
		}
		return nil, s.boltErr(err)
	}
	return tx, nil
}

// viewOn runs fn in a read transaction on h, every bbolt call guarded.
// Damage found marks the store read-only.
func (s *BoltStore) viewOn(h *handle, op string, fn func(*bolt.Tx) error) error {
	tx, err := s.begin(h, op, false)
	if err != nil {
		return err
	}
	err = guard(s.path, op, h.mapping, func() error { return fn(tx) })
	if rerr := guard(s.path, op, h.mapping, tx.Rollback); IsDamage(rerr) {
		s.stick(h, rerr)
	}
	if IsDamage(err) {
		s.fail(err, false)
	}
	return err
}

// updateOn runs fn in a write transaction on h and commits it.
func (s *BoltStore) updateOn(h *handle, op string, fn func(*bolt.Tx) error) error {
	tx, err := s.begin(h, op, true)
	if err != nil {
		return err
	}
	if err := guard(s.path, op, h.mapping, func() error { return fn(tx) }); err != nil {
		if rerr := guard(s.path, op, h.mapping, tx.Rollback); IsDamage(rerr) {
			s.stick(h, rerr)
		}
		return err
	}
	err = guard(s.path, op, h.mapping, tx.Commit)
	if IsDamage(err) {
		// A panic inside Commit: release the writer lock if the
		// transaction still holds it; if that fails too, the handle is
		// stuck.
		if rerr := guard(s.path, op, h.mapping, tx.Rollback); rerr != nil && !errors.Is(rerr, bolterrors.ErrTxClosed) {
			s.stick(h, err)
		}
	}
	return err
}

func (s *BoltStore) boltErr(err error) error {
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

func (s *BoltStore) wrapRead(op string, err error) error {
	if IsDamage(err) || errors.Is(err, ErrClosed) {
		return err
	}
	return fmt.Errorf("journal: %s %s: %w", op, s.path, err)
}

// closeHandle closes h; a stuck handle only has its descriptor closed
// (which releases the file lock), since bbolt's Close could block.
func (s *BoltStore) closeHandle(h *handle) error {
	if h == nil {
		return nil
	}
	s.hmu.Lock()
	stuck := h.stuck
	s.hmu.Unlock()
	if stuck {
		// Its mapping, which cannot be released without bbolt, keeps the
		// file's lock: the next open reuses its descriptor (dupFile).
		slog.Warn("journal: abandoning a bbolt handle left unusable by a panic; its mapping stays until exit", "file", s.path)
		if h.file != nil && s.inherit == nil {
			s.inherit = h.file
		}
		return nil
	}
	return guard(s.path, "close", nil, h.db.Close)
}

// Close waits for queued commits and closes the file. Calls after Close
// fail with ErrClosed; a second Close returns nil.
func (s *BoltStore) Close() error {
	// No indexer may start from here on (a Recover finishing meanwhile
	// would start one that nothing stops).
	s.mu.Lock()
	s.idx.closed = true
	s.mu.Unlock()
	s.stopIndexer()
	if !s.opt.ReadOnly {
		s.sendMu.Lock()
		s.mu.Lock()
		already := s.closing
		s.closing = true
		s.mu.Unlock()
		if !already {
			close(s.queue)
		}
		s.sendMu.Unlock()
		<-s.done
	}
	s.hmu.Lock()
	for s.recovering {
		s.hcond.Wait()
	}
	h := s.h
	s.h, s.herr = nil, ErrClosed
	s.hmu.Unlock()
	err := s.closeHandle(h)
	if s.inherit != nil {
		s.inherit.Close()
		s.inherit = nil
	}
	return err
}

// RawUpdate runs fn on the events bucket in a write transaction: for tests
// and tools that tamper with the file, never for the daemon. fn returns
// the new value of an event, or nil to leave it.
func RawUpdate(path string, fn func(seq uint64, raw []byte) []byte) error {
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
			b := tx.Bucket(bucketEvents)
			if b == nil {
				return ErrNotFound
			}
			type kv struct{ k, v []byte }
			var changes []kv
			if err := b.ForEach(func(k, v []byte) error {
				if nv := fn(binary.BigEndian.Uint64(k), v); nv != nil {
					changes = append(changes, kv{append([]byte(nil), k...), nv})
				}
				return nil
			}); err != nil {
				return err
			}
			for _, c := range changes {
				if err := b.Put(c.k, c.v); err != nil {
					return err
				}
			}
			return nil
		})
	})
}
