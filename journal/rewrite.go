package journal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bolterrors "go.etcd.io/bbolt/errors"
)

// The pieces of an offline repair (cmd/internal/replay.Repair holds the
// policy: what to keep, what to report).

// LockJournal takes the writer's lock on dir/journal.db (the lock bbolt
// and the daemon take), failing with ErrLocked while another process
// holds it. release drops it. (On systems other than Linux it does not
// lock.)
func LockJournal(dir string, timeout time.Duration) (release func() error, err error) {
	path := filepath.Join(dir, FileName)
	f, err := openForLock(path)
	if err != nil {
		return nil, fmt.Errorf("journal: lock %s: %w", path, err)
	}
	if err := lockFile(f, true, timeout); err != nil {
		f.Close()
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, lockedError(path, "stop zlayer-overlayd first")
		}
		return nil, fmt.Errorf("journal: lock %s: %w", path, err)
	}
	return func() error {
		err := f.Close()
		os.Remove(path + replacedSuffix) // Windows: the file replaceLocked moved aside
		return err
	}, nil
}

// CopyAside copies dir/journal.db to dir/journal.db.<suffix> (which must
// not exist), syncs it and the directory, and returns its path.
func CopyAside(dir, suffix string) (string, error) {
	src := filepath.Join(dir, FileName)
	dst := src + "." + suffix
	in, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("journal: copy %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", fmt.Errorf("journal: copy %s: %w", src, err)
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		os.Remove(dst)
		return "", fmt.Errorf("journal: copy %s to %s: %w", src, dst, err)
	}
	return dst, nil
}

// Rewrite replaces dir/journal.db with a new journal with identity ident
// holding chain (encoded envelopes, stored byte for byte so their hashes
// stay: each must check out and link to the one before, from sequence 1)
// followed by recs as new events. It writes a temporary file, syncs it,
// renames it into place and syncs the directory: a crash leaves either the
// old file or the new one. It returns the envelopes of recs. The caller
// holds the journal's lock (LockJournal).
func Rewrite(dir string, ident Identity, chain [][]byte, recs []Record) ([]Envelope, error) {
	path := filepath.Join(dir, FileName)
	tmp := path + ".rewrite"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("journal: rewrite: %w", err)
	}
	id := ident.ID
	s, err := OpenFile(tmp, Options{CreateWithID: &id, CreateLegacy: ident.Legacy})
	if err != nil {
		return nil, fmt.Errorf("journal: rewrite: %w", err)
	}
	fail := func(err error) ([]Envelope, error) {
		s.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("journal: rewrite %s: %w", path, err)
	}
	const chunk = 8192
	for i := 0; i < len(chain); i += chunk {
		if _, err := s.enqueue(item{raw: chain[i:min(i+chunk, len(chain))]}).Wait(); err != nil {
			return fail(err)
		}
	}
	var envs []Envelope
	if len(recs) > 0 {
		if envs, err = s.Append(recs).Wait(); err != nil {
			return fail(err)
		}
	}
	if rep, err := s.Verify(); err != nil {
		return fail(err)
	} else if !rep.OK() {
		return fail(rep.Err())
	}
	if err := s.Close(); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("journal: rewrite %s: %w", path, err)
	}
	if err := replaceLocked(tmp, path); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("journal: rewrite %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return nil, fmt.Errorf("journal: rewrite %s: renamed into place, but the directory sync failed: %w", path, err)
	}
	return envs, nil
}
