package main

import (
	"context"
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
// <data-dir>/overlayd/endpoint.json, else the default for --data-dir
// (ipc.SocketFor).
func (a *app) socketPath() string {
	if a.socket != "" {
		return a.socket
	}
	return ipc.SocketFor(a.dataDir)
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

// source connects to the daemon when one answers on the socket (it then
// holds the journal), else opens the journal read-only; a journal held by
// a daemon whose socket does not answer is exit 3.
func (a *app) source(ctx context.Context) (*source, error) {
	sock := a.socketPath()
	if c, err := ipc.Dial(ctx, sock, ipc.DialOptions{Attempts: 1, CallTimeout: 5 * time.Minute}); err == nil {
		return &source{client: c, socket: sock}, nil
	}
	st, err := a.store()
	if err == nil {
		return &source{store: st, file: filepath.Join(a.journalDir(), journal.FileName)}, nil
	}
	if !errors.Is(err, journal.ErrLocked) {
		return nil, err
	}
	c, derr := a.client(ctx) // the daemon may be starting: a few attempts
	if derr != nil {
		return nil, unreachable(fmt.Errorf("the journal is held by a running daemon, and %w", errors.Unwrap(derr)))
	}
	return &source{client: c, socket: sock}, nil
}
