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
	"syscall"
	"time"
)

// ErrSocketInUse is returned by Listen when another daemon serves the path.
var ErrSocketInUse = errors.New("ipc: socket in use")

type lockedListener struct {
	net.Listener
	lock *os.File
}

// SetDeadline passes an accept deadline to the unix listener (the server
// uses it to accept on its reserved descriptor without blocking).
func (l *lockedListener) SetDeadline(t time.Time) error {
	if d, ok := l.Listener.(interface{ SetDeadline(time.Time) error }); ok {
		return d.SetDeadline(t)
	}
	return errors.ErrUnsupported
}

func (l *lockedListener) Close() error {
	err := l.Listener.Close()
	l.lock.Close()
	return err
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
		c, derr := net.DialTimeout("unix", path, 500*time.Millisecond)
		if derr == nil {
			c.Close()
			lock.Close()
			return nil, fmt.Errorf("%w: a live daemon answers on %s", ErrSocketInUse, path)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			lock.Close()
			return nil, fmt.Errorf("ipc: remove stale socket %s: %w", path, err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("ipc: listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		lock.Close()
		return nil, fmt.Errorf("ipc: chmod %s: %w", path, err)
	}
	if g, err := user.LookupGroup("zlayer"); err == nil {
		if gid, err := strconv.Atoi(g.Gid); err == nil {
			_ = os.Chown(path, -1, gid) // best effort: root-only access stays
		}
	}
	return &lockedListener{Listener: l, lock: lock}, nil
}
