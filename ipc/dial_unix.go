//go:build !windows

package ipc

import (
	"context"
	"net"
)

// dialNet connects to the daemon's unix socket.
func dialNet(ctx context.Context, d *net.Dialer, path string) (net.Conn, error) {
	return d.DialContext(ctx, "unix", path)
}
