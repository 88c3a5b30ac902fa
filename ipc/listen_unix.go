//go:build unix

package ipc

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

type lockedListener struct {
	path string
	lock *os.File

	restoreMu sync.Mutex // one Restore at a time

	mu       sync.Mutex
	inner    *net.UnixListener
	file     os.FileInfo // the socket file inner is bound to (nil if it could not be read)
	deadline time.Time   // the accept deadline last set, carried to a new socket
	closed   bool
}

func (l *lockedListener) current() *net.UnixListener {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inner
}

// Accept accepts on the current socket; after Restore it goes on with the
// new one.
func (l *lockedListener) Accept() (net.Conn, error) {
	for {
		in := l.current()
		c, err := in.Accept()
		if err != nil {
			l.mu.Lock()
			swapped := l.inner != in && !l.closed
			l.mu.Unlock()
			if swapped {
				continue
			}
		}
		return c, err
	}
}

func (l *lockedListener) Addr() net.Addr { return l.current().Addr() }

// SetDeadline passes an accept deadline to the current socket (the server
// uses it to accept on its reserved descriptor without blocking).
func (l *lockedListener) SetDeadline(t time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.deadline = t
	return l.inner.SetDeadline(t)
}

// Close closes the socket and removes its file, unless the file at the
// path is no longer this socket's (removed by hand, or another process's
// since): that one is left alone.
func (l *lockedListener) Close() error {
	l.mu.Lock()
	l.closed = true
	in, file := l.inner, l.file
	l.mu.Unlock()
	if fi, err := os.Lstat(l.path); err != nil || !os.SameFile(fi, file) {
		in.SetUnlinkOnClose(false)
	}
	err := in.Close()
	l.lock.Close()
	return err
}

func (l *lockedListener) Restore() (bool, error) {
	l.restoreMu.Lock()
	defer l.restoreMu.Unlock()
	l.mu.Lock()
	closed, file := l.closed, l.file
	l.mu.Unlock()
	if closed {
		return false, net.ErrClosed
	}
	// The checks and the probe run without l.mu: Accept goes on meanwhile.
	if fi, err := os.Lstat(l.path); err == nil {
		if os.SameFile(fi, file) {
			return false, nil
		}
		// Something else is at the path: take it only if nobody serves it.
		if err := removeStale(l.path, l.path+" was replaced by a socket another process answers on"); err != nil {
			return false, err
		}
	}
	in, newFile, err := bindSocket(l.path)
	if err != nil {
		return false, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		in.Close()
		return false, net.ErrClosed
	}
	if !l.deadline.IsZero() {
		in.SetDeadline(l.deadline)
	}
	old := l.inner
	old.SetUnlinkOnClose(false) // the path is the new socket's now
	l.inner, l.file = in, newFile
	old.Close() // wakes Accept, which goes on with the new socket
	return true, nil
}

// removeStale removes the file at path unless a server answers on it: then
// the error is ErrSocketInUse, saying inUse. A file already gone is fine.
func removeStale(path, inUse string) error {
	if c, err := net.DialTimeout("unix", path, 500*time.Millisecond); err == nil {
		c.Close()
		return fmt.Errorf("%w: %s", ErrSocketInUse, inUse)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("ipc: remove stale socket %s: %w", path, err)
	}
	return nil
}

// bindSocket listens on path with mode 0660 and, when it exists, group
// zlayer. It returns the socket file's FileInfo, nil if it cannot be read.
func bindSocket(path string) (*net.UnixListener, os.FileInfo, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, nil, fmt.Errorf("ipc: create socket directory: %w", err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, nil, fmt.Errorf("ipc: listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, nil, fmt.Errorf("ipc: chmod %s: %w", path, err)
	}
	if g, err := user.LookupGroup("zlayer"); err == nil {
		if gid, err := strconv.Atoi(g.Gid); err == nil {
			_ = os.Chown(path, -1, gid) // best effort: root-only access stays
		}
	}
	fi, _ := os.Lstat(path) // nil on error: Restore then treats the file as a stranger's
	return l, fi, nil
}

// Listen binds the daemon's unix socket at path. It holds an exclusive lock
// on path+".lock" for the listener's life, so two daemons never race for
// one path; it removes an existing socket file only after a connect probe
// shows nobody serves it; it sets mode 0660 and, when the group exists,
// group zlayer.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("ipc: create socket directory: %w", err)
	}
	lockPath := path + ".lock"
	lock, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ipc: open %s: %w", lockPath, err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is held by another zlayer-overlayd (lock %s)", ErrSocketInUse, path, lockPath)
		}
		return nil, fmt.Errorf("ipc: lock %s: %w", lockPath, err)
	}
	if _, err := os.Lstat(path); err == nil {
		if err := removeStale(path, "a live daemon answers on "+path); err != nil {
			lock.Close()
			return nil, err
		}
	}
	l, file, err := bindSocket(path)
	if err != nil {
		lock.Close()
		return nil, err
	}
	return &lockedListener{path: path, lock: lock, inner: l, file: file}, nil
}
