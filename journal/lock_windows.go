package journal

import (
	"errors"
	"fmt"
	"os"
	"time"

	bolterrors "go.etcd.io/bbolt/errors"
	"golang.org/x/sys/windows"
)

// lockFile takes the journal's own lock on f, waiting up to timeout:
// byte -2 of the file, locked with LockFileEx (exclusive for a writer,
// shared for a reader). It is not the byte bbolt locks (-1): Windows locks
// belong to a handle and do not nest, so bbolt locking its byte on this
// same handle right after must not find it taken. Both the daemon (through
// bbolt's OpenFile) and LockJournal take this byte, so they exclude each
// other as flock does on Linux.
func lockFile(f *os.File, exclusive bool, timeout time.Duration) error {
	flags := uint32(windows.LOCKFILE_FAIL_IMMEDIATELY)
	if exclusive {
		flags |= windows.LOCKFILE_EXCLUSIVE_LOCK
	}
	const m2 = (1 << 32) - 2 // -2 as a uint32
	deadline := time.Now().Add(timeout)
	for {
		err := windows.LockFileEx(windows.Handle(f.Fd()), flags, 0, 1, 0, &windows.Overlapped{Offset: m2, OffsetHigh: (1 << 32) - 1})
		switch {
		case err == nil:
			return nil
		case !errors.Is(err, windows.ERROR_LOCK_VIOLATION):
			return err
		case time.Now().After(deadline):
			return bolterrors.ErrTimeout
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// openForLock opens the journal for LockJournal. FILE_SHARE_DELETE lets a
// rewrite (repair) rename a new journal over it while the lock is held,
// which Windows refuses otherwise.
func openForLock(path string) (*os.File, error) {
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return nil, err
	}
	h, err := windows.CreateFile(p, windows.GENERIC_READ|windows.GENERIC_WRITE,
		windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE|windows.FILE_SHARE_DELETE, nil,
		windows.OPEN_EXISTING, windows.FILE_ATTRIBUTE_NORMAL, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(h), path), nil
}

// dupFile is not supported on Windows: a store whose bbolt handle is
// stuck cannot be reopened in the same process.
func dupFile(f *os.File) (*os.File, error) {
	return nil, errors.New("reopening a file whose bbolt handle is stuck is not supported on Windows; restart the process")
}

// lockedError is ErrLocked for path with advice (the holder is not named
// on Windows).
func lockedError(path, advice string) error {
	return fmt.Errorf("%w: %s is held by another process (%s)", ErrLocked, path, advice)
}
