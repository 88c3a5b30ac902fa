package journal

import (
	"fmt"
	"os"
)

// syncDir is a no-op on Windows, where a directory cannot be fsync'd (a
// rename is made durable by the file system's own journal).
func syncDir(dir string) error { return nil }

// renameNeedsClosedFiles: Windows refuses to rename over a file that is
// open, so the compaction closes the journal around its swap.
const renameNeedsClosedFiles = true

// replacedSuffix names the old journal replaceLocked moves aside.
const replacedSuffix = ".replaced"

// replaceLocked puts tmp in place of path, which the caller holds open
// for its lock (LockJournal, opened with FILE_SHARE_DELETE). Windows
// refuses to rename over an open file but lets the open file itself be
// renamed: path moves to path.replaced (removed when the lock is
// released), then tmp to path. A crash between the two leaves no
// journal.db but journal.db.replaced (the old journal) and the complete
// journal.db.rewrite; the daemon then refuses to boot (a lost journal)
// and either file can be put back by hand.
func replaceLocked(tmp, path string) error {
	old := path + replacedSuffix
	os.Remove(old)
	if err := os.Rename(path, old); err != nil {
		return fmt.Errorf("move the old journal aside: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		if rerr := os.Rename(old, path); rerr != nil {
			return fmt.Errorf("rename %s into place: %w; and the old journal could not be put back from %s: %v", tmp, err, old, rerr)
		}
		return fmt.Errorf("rename %s into place: %w (the old journal is back)", tmp, err)
	}
	return nil
}
