//go:build unix

package daemon

import (
	"net"

	"github.com/zlayer/overlayd/ipc"
)

func listen(path string) (net.Listener, error) { return ipc.Listen(path) }
