package ipc

import "errors"

// ErrSocketInUse is returned by Listen when another daemon serves the path
// (on Windows: holds the pipe).
var ErrSocketInUse = errors.New("ipc: socket in use")

// Restorer is implemented by the Unix listener Listen returns.
type Restorer interface {
	// Restore binds the socket path again when its file was removed or
	// replaced by hand (connections already open are not affected); it
	// reports whether it did. It never takes a path that a live daemon
	// answers on.
	Restore() (bool, error)
}
