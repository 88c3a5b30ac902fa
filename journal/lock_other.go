//go:build !linux && !windows

package journal

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// lockFile is a no-op here: bbolt takes its own lock right after, and the
// file is checked before bbolt maps it either way.
func lockFile(f *os.File, exclusive bool, timeout time.Duration) error { return nil }

// dupFile is not supported here: a store whose bbolt handle is stuck
// cannot be reopened in the same process.
func dupFile(f *os.File) (*os.File, error) {
	return nil, errors.New("reopening a file whose bbolt handle is stuck is not supported on this system; restart the process")
}

// openForLock opens the journal for LockJournal.
func openForLock(path string) (*os.File, error) { return os.OpenFile(path, os.O_RDWR, 0) }

// lockedError is ErrLocked for path with advice (the holder cannot be
// named here).
func lockedError(path, advice string) error {
	return fmt.Errorf("%w: %s is held by another process (%s)", ErrLocked, path, advice)
}
