//go:build windows

package daemon

import (
	"net"

	"github.com/Microsoft/go-winio"
)

// PipeName is the daemon's named pipe on Windows.
const PipeName = `\\.\pipe\zlayer-overlayd`

// listen serves the named pipe; path is ignored on Windows. The pipe is
// restricted to SYSTEM and Administrators.
func listen(string) (net.Listener, error) {
	return winio.ListenPipe(PipeName, &winio.PipeConfig{
		SecurityDescriptor: "D:P(A;;GA;;;SY)(A;;GA;;;BA)",
	})
}
