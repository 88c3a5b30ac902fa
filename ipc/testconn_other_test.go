//go:build !windows

package ipc

import (
	"net"
	"path/filepath"
	"testing"

	"github.com/zlayer/overlayd/tools/testtemp"
)

// testSocketPath is a fresh socket path for a test's server.
func testSocketPath(t testing.TB) string { return filepath.Join(testtemp.Dir(t), "s.sock") }

// testDial connects to a test server's socket.
func testDial(path string) (net.Conn, error) { return net.Dial("unix", path) }
