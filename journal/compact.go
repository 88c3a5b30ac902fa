package journal

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// CheckpointState is the projection state a compaction stores in its
// checkpoint: the state after event Through (the caller replays it; the
// journal does not know the projections).
type CheckpointState struct {
	Schema uint32
	Body   []byte
}

// CompactResult says what a compaction did.
type CompactResult struct {
	Checkpoint   *Checkpoint
	Archive      string // the archive's path
	Events       uint64 // events moved into it
	ArchiveBytes int64
	BytesBefore  int64 // the journal file's size before
	BytesAfter   int64 // and after
	Head         uint64
	// Took is the whole compaction; Held the part during which commits
	// and reads waited (the rewrite of the remaining events and the swap).
	Took, Held time.Duration
}

// ErrCompactRange is returned for a compaction point outside the events
// the journal holds.
var ErrCompactRange = errors.New("journal: nothing to compact there")

// compactChunk bounds the events read in one read transaction while the
// archive is written, and the puts in one write transaction of the
// rewrite: a commit that must grow the file waits for the read
// transactions on it, so none of them is long.
const compactChunk = 64 << 10

// Compact seals events first..through (first: 1, or the event after the
// current checkpoint) into an archive file and replaces them in the
// journal by a checkpoint at through holding state:
//
//  1. the events are read (in short read transactions, commits going on),
//     checked (hash and link) and written to
//     <dir>/archive/<id>-<first>-<through>.ovla, which is synced and
//     renamed into place, and the directory synced;
//  2. the journal is copied into a new file, journal.db.compact, without
//     the archived events, without the index entries and retained states
//     at or before through, with every other bucket and key as it is:
//     first in bulk while commits go on, then, commits held (the writer's
//     lock), the commits since, and the checkpoint in meta;
//  3. reads wait too, the new file is renamed over the journal (the
//     directory synced) and becomes the store's handle.
//
// Step 1 or 2 failing (a full disk, say) leaves the journal as it was,
// writable; the temporary files are removed. Nothing acknowledged is lost:
// step 2 copies everything up to the head, and commits resume on the new
// file. Sequence numbers do not restart: the journal holds through+1..Head
// after it, Iterate from before through starts at through+1, HashAt(through)
// is the checkpoint's hash and HashAt of an earlier event fails with
// ErrCompacted. The caller checks that state is the state at through; one
// compaction runs at a time.
func (s *BoltStore) Compact(through uint64, state CheckpointState) (*CompactResult, error) {
	start := time.Now()
	if s.opt.ReadOnly {
		return nil, fmt.Errorf("journal: compact %s: the journal is open read-only", s.path)
	}
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	if h := s.Health(); !h.OK() {
		return nil, fmt.Errorf("journal: compact %s: %w", s.path, h.Err)
	}
	prev := s.Checkpoint()
	first := uint64(1)
	var prevHash [32]byte
	var archives []ArchiveRef
	if prev != nil {
		first, prevHash, archives = prev.Seq+1, prev.Hash, prev.Archives
	}
	head, _ := s.Head()
	if through < first || through > head {
		return nil, fmt.Errorf("%w: compact through event %d, but %s holds events %d..%d", ErrCompactRange, through, s.path, first, head)
	}
	res := &CompactResult{Events: through - first + 1}
	if fi, err := os.Stat(s.path); err == nil {
		res.BytesBefore = fi.Size()
	}

	// 1. The archive.
	adir := filepath.Join(s.dir(), ArchiveDirName)
	if err := os.MkdirAll(adir, 0o700); err != nil {
		return nil, fmt.Errorf("journal: compact %s: archive directory: %w", s.path, err)
	}
	name := ArchiveName(s.ident.ID, first, through)
	apath := filepath.Join(adir, name)
	last, digest, err := s.writeArchive(apath, first, through, prevHash)
	if err != nil {
		return nil, fmt.Errorf("journal: compact %s: write archive %s: %w (the journal is unchanged)", s.path, apath, err)
	}
	if fi, err := os.Stat(apath); err == nil {
		res.ArchiveBytes = fi.Size()
	}
	res.Archive = apath
	ck := &Checkpoint{Journal: s.ident.ID, Seq: through, Hash: last.Hash, LastID: last.ID, Time: last.Time,
		Compacted: s.ids.now(), Schema: state.Schema, State: state.Body, StateHash: sha256.Sum256(state.Body),
		Archives: append(append([]ArchiveRef(nil), archives...),
			ArchiveRef{Name: name, First: first, Last: through, PrevHash: prevHash, LastHash: last.Hash, Hash: digest})}
	ck.encode()

	// 2. The rewrite: a bulk copy while commits go on, then, commits
	// held, the commits since.
	tmp := s.path + ".compact"
	rewriteErr := func(err error) error {
		os.Remove(tmp)
		return fmt.Errorf("journal: compact %s: rewrite: %w (the journal is unchanged; the archive %s was written and is named by no checkpoint)", s.path, err, apath)
	}
	// The index up to the head first, outside the hold: the keys written
	// after the bulk copy are copied while commits wait.
	s.indexNow()
	rw, err := s.startRewrite(tmp, ck)
	if err != nil {
		return nil, rewriteErr(err)
	}
	hit("journal/compact-copied")
	held := time.Now()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if h := s.Health(); !h.OK() {
		rw.abort()
		return nil, fmt.Errorf("journal: compact %s: %w (the archive %s was written; the journal is unchanged)", s.path, h.Err, apath)
	}
	head, _ = s.Head()
	if err := s.finishRewrite(rw, ck, head); err != nil {
		return nil, rewriteErr(err)
	}

	rewritten := time.Now()

	// 3. The swap, reads held.
	if err := s.swapIn(tmp, ck); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("journal: compact %s: %w", s.path, err)
	}
	res.Held = time.Since(held)
	slog.Debug("journal compaction phases", "archive+bulk copy", held.Sub(start), "last commits", rewritten.Sub(held), "swap", time.Since(rewritten))
	res.Checkpoint = s.Checkpoint()
	res.Head = head
	if fi, err := os.Stat(s.path); err == nil {
		res.BytesAfter = fi.Size()
	}
	res.Took = time.Since(start)
	slog.Info("journal compacted", "file", s.path, "archive", apath, "events", res.Events, "checkpoint", through,
		"bytes_before", res.BytesBefore, "bytes_after", res.BytesAfter, "took", res.Took.Round(time.Millisecond), "held", res.Held.Round(time.Millisecond))
	return res, nil
}

// writeArchive writes events first..through to path (through a temporary
// file, synced, renamed, the directory synced). It returns the last event
// (no payload) and the archive's digest.
func (s *BoltStore) writeArchive(path string, first, through uint64, prev [32]byte) (*Envelope, [32]byte, error) {
	var digest [32]byte
	tmp := path + ".tmp"
	aw, err := createArchive(tmp, s.ident.ID, first, through, prev)
	if err != nil {
		return nil, digest, err
	}
	fail := func(err error) (*Envelope, [32]byte, error) {
		aw.abort()
		os.Remove(tmp)
		return nil, digest, err
	}
	var last Envelope
	half := first + (through-first)/2
	for from := first; from <= through; from += compactChunk {
		to := min(from+compactChunk-1, through)
		err := s.view("compact: read events", func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketEvents)
			if b == nil {
				return errors.New("the events bucket is missing")
			}
			c := b.Cursor()
			want := from
			for k, v := c.Seek(seqKey(from)); k != nil && want <= to; k, v = c.Next() {
				if ne64(k) != want {
					return fmt.Errorf("event %d: %w (found %d)", want, ErrNotFound, ne64(k))
				}
				if err := aw.add(v); err != nil {
					return err
				}
				if want == to && to == through {
					if err := decodeInto(&last, v, false); err != nil {
						return err
					}
					last.Payload = nil
				}
				want++
			}
			if want <= to {
				return fmt.Errorf("events %d..%d: %w", want, to, ErrNotFound)
			}
			return nil
		})
		if err != nil {
			return fail(err)
		}
		if from <= half && half <= to {
			hit("journal/compact-archive")
			if s.faultHook != nil {
				if err := s.faultHook("compact-archive"); err != nil {
					return fail(err)
				}
			}
		}
	}
	if digest, err = aw.finish(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return nil, digest, fmt.Errorf("renamed into place, but the directory sync failed: %w", err)
	}
	return &last, digest, nil
}

// swapIn opens the rewritten file tmp (taking its lock), waits for the
// reads in flight on the current handle, renames tmp over the journal and
// makes the new handle current. On failure the old handle stays.
func (s *BoltStore) swapIn(tmp string, ck *Checkpoint) error {
	nh, err := s.openHandleAt(tmp)
	if err != nil {
		return fmt.Errorf("open the rewritten file %s: %w (the journal is unchanged)", tmp, err)
	}
	s.hmu.Lock()
	for s.recovering {
		s.hcond.Wait()
	}
	s.recovering = true
	old := s.drainReaders()
	abort := func(err error) error {
		s.recovering = false
		s.hcond.Broadcast()
		s.hmu.Unlock()
		_ = s.closeHandle(nh)
		return err
	}
	if old == nil {
		return abort(ErrClosed)
	}
	if old.readers > 0 {
		return abort(fmt.Errorf("%d read(s) still in flight after %v (the journal is unchanged); try again", old.readers, s.opt.RecoverDrain))
	}
	if s.faultHook != nil {
		if err := s.faultHook("compact-swap"); err != nil {
			return abort(fmt.Errorf("swap: %w (the journal is unchanged)", err))
		}
	}
	hit("journal/compact-swap")
	if renameNeedsClosedFiles {
		reopened, err := s.renameClosed(tmp, old, nh)
		if err != nil {
			s.recovering = false
			s.hcond.Broadcast()
			s.hmu.Unlock()
			return err
		}
		nh, old = reopened, nil
	} else if err := os.Rename(tmp, s.path); err != nil {
		return abort(fmt.Errorf("rename %s over the journal: %w (the journal is unchanged)", tmp, err))
	}
	s.h = nh
	s.mu.Lock()
	s.ckpt = ck
	s.checkedOK = time.Time{}
	s.mu.Unlock()
	s.recovering = false
	s.hcond.Broadcast()
	s.hmu.Unlock()
	// The old file is unlinked and nothing reads it any more; unmapping a
	// large file takes a while, and the commits need not wait for it.
	go func() {
		if old == nil {
			return // closed before the rename (renameClosed)
		}
		if err := s.closeHandle(old); err != nil {
			slog.Warn("journal: closing the handle on the file before compaction", "file", s.path, "err", err)
		}
	}()
	// Before the commits resume: a commit on the new file must not be
	// acknowledged while the rename that makes it the journal could still
	// be lost.
	if err := syncDir(s.dir()); err != nil {
		// The rename is done; the directory entry may not be durable yet.
		s.fail(fmt.Errorf("compact: the rewritten journal was renamed into place, but the directory sync failed: %w", err), true)
		return nil
	}
	return nil
}

// renameClosed is the swap where a file that is open cannot be renamed
// over (Windows: "Sharing violation"): it closes the rewritten file's
// handle nh and the journal's handle old, renames tmp over the journal and
// opens it again. It runs with s.hmu held and no reads in flight. On a
// failed rename the journal is reopened as it was (s.h is set to it) and
// the error says the journal is unchanged; a journal that cannot be
// reopened makes the store read-only with the reason.
func (s *BoltStore) renameClosed(tmp string, old, nh *handle) (*handle, error) {
	if old.stuck {
		_ = guard(s.path, "close", nil, nh.db.Close)
		return nil, fmt.Errorf("rename %s over the journal: the journal's handle is unusable after a panic and cannot be closed (the journal is unchanged); restart the daemon", tmp)
	}
	if err := guard(s.path, "close", nil, nh.db.Close); err != nil {
		return nil, fmt.Errorf("close the rewritten file %s: %w (the journal is unchanged)", tmp, err)
	}
	if err := guard(s.path, "close", nil, old.db.Close); err != nil {
		s.fail(fmt.Errorf("compact: close the journal before the swap: %w", err), false)
		return nil, fmt.Errorf("close the journal before the swap: %w (the journal is unchanged, but its handle is closed: the store is read-only until Recover)", err)
	}
	renameErr := os.Rename(tmp, s.path)
	h, err := s.openHandleAt(s.path)
	if err != nil {
		s.h = nil
		s.fail(fmt.Errorf("compact: reopen %s after the swap: %w", s.path, err), false)
		if renameErr != nil {
			return nil, fmt.Errorf("rename %s over the journal: %w; reopening the journal then failed: %v", tmp, renameErr, err)
		}
		return nil, fmt.Errorf("the rewritten journal is in place, but reopening it failed: %w", err)
	}
	if renameErr != nil {
		s.h = h
		return nil, fmt.Errorf("rename %s over the journal: %w (the journal is unchanged)", tmp, renameErr)
	}
	return h, nil
}
