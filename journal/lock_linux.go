package journal

import (
	"errors"
	"os"
	"syscall"
	"time"

	bolterrors "go.etcd.io/bbolt/errors"
)

// lockFile takes the lock bbolt takes (flock: exclusive for a writer,
// shared for a reader) on f, waiting up to timeout. bbolt takes it again
// on the same descriptor, which then succeeds at once; taking it first
// lets the file be checked before bbolt reads it.
func lockFile(f *os.File, exclusive bool, timeout time.Duration) error {
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case !errors.Is(err, syscall.EWOULDBLOCK):
			return err
		case time.Now().After(deadline):
			return bolterrors.ErrTimeout
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dupFile returns a new descriptor for f's open file description, which
// holds f's lock: a store whose bbolt handle is stuck (its mapping still
// references the description, so the lock cannot be released) reopens
// the file through it.
func dupFile(f *os.File) (*os.File, error) {
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// openForLock opens the journal for LockJournal.
func openForLock(path string) (*os.File, error) { return os.OpenFile(path, os.O_RDWR, 0) }
