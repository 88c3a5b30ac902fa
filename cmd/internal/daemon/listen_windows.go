//go:build windows

package daemon

import (
	"net"

	"github.com/zlayer/overlayd/ipc"
)

// listen serves the named pipe at path (ipc.DefaultSocketPath:
// \\.\pipe\zlayer-overlayd for the default data dir), restricted to SYSTEM
// and Administrators (ipc.PipeSDDL).
func listen(path string) (net.Listener, error) { return ipc.Listen(path) }
