package winsvc

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// Log rotation defaults: the service's log file is rotated at 10 MiB and
// three old files are kept (overlayd.log.1 the newest, .3 the oldest).
const (
	DefaultMaxLogSize = 10 << 20
	DefaultKeepLogs   = 3
)

// LogPath is the service's log file for dataDir:
// <data-dir>\overlayd\logs\overlayd.log.
func LogPath(dataDir string) string {
	return filepath.Join(dataDir, "overlayd", "logs", "overlayd.log")
}

// RotatingFile is an append-only log file rotated by size: a write that
// would take it past Max renames it to path.1 (path.1 to path.2, …, the
// oldest past Keep removed) and starts a new one. A line is never split
// across two files (one Write is one slog record). Safe for concurrent
// use; Write after Close fails.
type RotatingFile struct {
	path string
	max  int64
	keep int

	mu   sync.Mutex
	f    *os.File
	size int64
}

// OpenLog opens (appends to) the log file at path, creating its folder;
// max <= 0 and keep <= 0 take the defaults.
func OpenLog(path string, max int64, keep int) (*RotatingFile, error) {
	if max <= 0 {
		max = DefaultMaxLogSize
	}
	if keep <= 0 {
		keep = DefaultKeepLogs
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("log folder %s: %w", filepath.Dir(path), err)
	}
	r := &RotatingFile{path: path, max: max, keep: keep}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *RotatingFile) open() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("log file %s: %w", r.path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("log file %s: %w", r.path, err)
	}
	r.f, r.size = f, st.Size()
	return nil
}

// Write appends p, rotating first when p would take the file past max (a
// file holding nothing yet takes p whatever its size).
func (r *RotatingFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return 0, fmt.Errorf("log file %s: %w", r.path, os.ErrClosed)
	}
	if r.size > 0 && r.size+int64(len(p)) > r.max {
		if err := r.rotate(); err != nil {
			return 0, err
		}
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	return n, err
}

// rotate closes the file first: Windows does not rename an open file.
func (r *RotatingFile) rotate() error {
	if err := r.f.Close(); err != nil {
		return fmt.Errorf("log file %s: close to rotate: %w", r.path, err)
	}
	r.f = nil
	os.Remove(fmt.Sprintf("%s.%d", r.path, r.keep))
	for i := r.keep - 1; i >= 1; i-- {
		old := fmt.Sprintf("%s.%d", r.path, i)
		if _, err := os.Stat(old); err == nil {
			if err := os.Rename(old, fmt.Sprintf("%s.%d", r.path, i+1)); err != nil {
				return fmt.Errorf("log file %s: rotate: %w", old, err)
			}
		}
	}
	if err := os.Rename(r.path, r.path+".1"); err != nil {
		// Keep logging into the same file rather than nowhere.
		if oerr := r.open(); oerr != nil {
			return oerr
		}
		return fmt.Errorf("log file %s: rotate: %w", r.path, err)
	}
	return r.open()
}

// Close closes the file.
func (r *RotatingFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}
