package ipc

import (
	"context"
	"net"

	"github.com/Microsoft/go-winio"
)

// dialNet connects to the daemon's named pipe, or to an AF_UNIX socket
// when path is not a pipe.
func dialNet(ctx context.Context, d *net.Dialer, path string) (net.Conn, error) {
	if IsPipe(path) {
		return winio.DialPipeContext(ctx, path)
	}
	return d.DialContext(ctx, "unix", path)
}
