package ipc

import (
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"testing"

	"github.com/Microsoft/go-winio"
)

var testPipes atomic.Uint64

// testSocketPath is a fresh named pipe for a test's server: the daemon's
// transport on Windows (wine has no AF_UNIX sockets).
func testSocketPath(testing.TB) string {
	return fmt.Sprintf(`\\.\pipe\overlayd-test-%d-%d`, os.Getpid(), testPipes.Add(1))
}

// testDial connects to a test server's pipe.
func testDial(path string) (net.Conn, error) { return winio.DialPipe(path, nil) }
