package ipc

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// EndpointFileName is the file, in <data-dir>/overlayd, where a serving
// daemon records where it listens.
const EndpointFileName = "endpoint.json"

// Endpoint is what a serving daemon records in its data dir, so that a
// client given only the data dir finds a daemon started with --socket
// elsewhere.
type Endpoint struct {
	Socket   string `json:"socket"`
	PID      int    `json:"pid"`
	Version  string `json:"version"`
	Protocol int    `json:"protocol"`
}

// ErrNoEndpoint matches (errors.Is) ReadEndpoint's error when the data dir
// has no endpoint file (no daemon serves, or it was stopped cleanly).
var ErrNoEndpoint = errors.New("ipc: no endpoint file")

// EndpointPath is the endpoint file of dataDir.
func EndpointPath(dataDir string) string {
	return filepath.Join(dataDir, "overlayd", EndpointFileName)
}

// WriteEndpoint replaces dataDir's endpoint file atomically: a temporary
// file written and fsync'd beside it, renamed over it, the directory
// fsync'd.
func WriteEndpoint(dataDir string, ep Endpoint) error {
	path := EndpointPath(dataDir)
	b, err := json.Marshal(ep)
	if err != nil {
		return fmt.Errorf("ipc: endpoint %s: %w", path, err)
	}
	if err := writeFileAtomic(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("ipc: endpoint %s: %w", path, err)
	}
	return nil
}

// ReadEndpoint reads dataDir's endpoint file. Without one the error
// matches ErrNoEndpoint (and os.ErrNotExist). The file may be stale (a
// daemon killed with SIGKILL leaves it): a caller dials the socket, and
// falls back to DefaultSocketPath when it does not answer.
func ReadEndpoint(dataDir string) (Endpoint, error) {
	path := EndpointPath(dataDir)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Endpoint{}, fmt.Errorf("%w %s: %w", ErrNoEndpoint, path, err)
	}
	if err != nil {
		return Endpoint{}, fmt.Errorf("ipc: endpoint %s: %w", path, err)
	}
	var ep Endpoint
	if err := json.Unmarshal(b, &ep); err != nil {
		return Endpoint{}, fmt.Errorf("ipc: endpoint %s: %w", path, err)
	}
	if ep.Socket == "" {
		return Endpoint{}, fmt.Errorf("ipc: endpoint %s: no socket", path)
	}
	return ep, nil
}

// RemoveEndpoint removes dataDir's endpoint file if it is the one process
// pid wrote (a newer daemon's file is left alone).
func RemoveEndpoint(dataDir string, pid int) error {
	ep, err := ReadEndpoint(dataDir)
	if errors.Is(err, ErrNoEndpoint) {
		return nil
	}
	if err == nil && ep.PID != pid {
		return nil
	}
	if err := os.Remove(EndpointPath(dataDir)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("ipc: endpoint: %w", err)
	}
	return nil
}

// SocketFor is the socket a client of dataDir dials when it is given no
// --socket: the one the endpoint file names, else DefaultSocketPath.
func SocketFor(dataDir string) string {
	if ep, err := ReadEndpoint(dataDir); err == nil {
		return ep.Socket
	}
	return DefaultSocketPath(dataDir)
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory: fsync'd, renamed, the directory fsync'd.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	return syncDir(dir)
}
