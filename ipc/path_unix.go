//go:build !windows

package ipc

import (
	"fmt"
	"path/filepath"
)

// DefaultDataDir is the data directory of a root daemon.
const DefaultDataDir = "/var/lib/zlayer"

// DefaultSocketPath is the socket for dataDir, as the reference contract
// derives it: /var/run/zlayer-overlayd.sock for the default data dir, else
// <data-dir>/run/zlayer-overlayd.sock, or a /tmp name (FNV-1a-64 of the data
// dir and "overlayd") when that path would not fit in a sockaddr_un.
func DefaultSocketPath(dataDir string) string {
	if filepath.Clean(dataDir) == DefaultDataDir {
		return "/var/run/zlayer-overlayd.sock"
	}
	p := filepath.Join(dataDir, "run", "zlayer-overlayd.sock")
	if len(p) <= 103 {
		return p
	}
	h := uint64(0xcbf29ce484222325)
	for _, b := range []byte(dataDir + "overlayd") {
		h ^= uint64(b)
		h *= 0x100000001b3
	}
	return fmt.Sprintf("/tmp/zlayer-overlayd-%016x.sock", h)
}
