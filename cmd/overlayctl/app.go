package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/zlayer/overlayd/cmd/internal/replay"
	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/journal"
)

// journalDir is where the daemon keeps its journal.
func (a *app) journalDir() string { return filepath.Join(a.dataDir, "overlayd") }

// socketPath is --socket, else the socket the daemon recorded in
// <data-dir>/overlayd/endpoint.json, else the default for --data-dir.
func (a *app) socketPath() string {
	if a.socket != "" {
		return a.socket
	}
	if s := endpointSocket(a.dataDir); s != "" {
		return s
	}
	return ipc.DefaultSocketPath(a.dataDir)
}

// endpointSocket reads the socket from the endpoint file the daemon writes
// once it serves ({"socket": "...", "pid": N, ...}); "" when there is none.
func endpointSocket(dataDir string) string {
	b, err := os.ReadFile(filepath.Join(dataDir, "overlayd", "endpoint.json"))
	if err != nil {
		return ""
	}
	var ep struct {
		Socket string `json:"socket"`
	}
	if json.Unmarshal(b, &ep) != nil {
		return ""
	}
	return ep.Socket
}

// store opens the journal read-only (offline). A journal held by a running
// daemon gives an error matching journal.ErrLocked.
func (a *app) store() (*journal.BoltStore, error) {
	dir := a.journalDir()
	st, err := journal.Open(dir, replay.Indexing(journal.Options{ReadOnly: true, LockTimeout: 200 * time.Millisecond}))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no journal in %s (is --data-dir right?): %w", dir, err)
	}
	return st, err
}

// client connects to the daemon; failing, the error exits 3.
func (a *app) client(ctx context.Context) (*ipc.Client, error) {
	sock := a.socketPath()
	c, err := ipc.Dial(ctx, sock, ipc.DialOptions{Attempts: 3, CallTimeout: 5 * time.Minute})
	if err != nil {
		return nil, unreachable(fmt.Errorf("the daemon does not answer on %s: %w", sock, err))
	}
	return c, nil
}

// source is where the data comes from: the journal file read offline, or
// the daemon. Exactly one of store and client is set.
type source struct {
	store  *journal.BoltStore
	client *ipc.Client
	file   string // the journal file (offline)
	socket string // the socket (online)
}

// Online says whether the data comes from the daemon.
func (s *source) Online() bool { return s.client != nil }

// String is the "source: …" line every output carries.
func (s *source) String() string {
	if s.client != nil {
		return fmt.Sprintf("live daemon (socket %s)", s.socket)
	}
	return fmt.Sprintf("journal file %s (offline)", s.file)
}

func (s *source) Close() {
	if s.store != nil {
		s.store.Close()
	}
	if s.client != nil {
		s.client.Close()
	}
}

// source opens the journal read-only, or connects to the daemon when a
// daemon holds the journal (exit 3 when its socket does not answer).
func (a *app) source(ctx context.Context) (*source, error) {
	st, err := a.store()
	if err == nil {
		return &source{store: st, file: filepath.Join(a.journalDir(), journal.FileName)}, nil
	}
	if !errors.Is(err, journal.ErrLocked) {
		return nil, err
	}
	c, derr := a.client(ctx)
	if derr != nil {
		return nil, unreachable(fmt.Errorf("the journal is held by a running daemon, and %w", errors.Unwrap(derr)))
	}
	return &source{client: c, socket: a.socketPath()}, nil
}

// liveSource connects to the daemon, or, when none answers and the journal
// is free, opens the journal offline (for views that can show the journal's
// state without the live columns).
func (a *app) liveSource(ctx context.Context) (*source, error) {
	sock := a.socketPath()
	c, err := ipc.Dial(ctx, sock, ipc.DialOptions{Attempts: 1, CallTimeout: time.Minute})
	if err == nil {
		return &source{client: c, socket: sock}, nil
	}
	st, serr := a.store()
	if serr == nil {
		return &source{store: st, file: filepath.Join(a.journalDir(), journal.FileName)}, nil
	}
	if errors.Is(serr, journal.ErrLocked) {
		return nil, unreachable(fmt.Errorf("the journal is held by a running daemon, and it does not answer on %s: %w", sock, err))
	}
	return nil, serr
}
