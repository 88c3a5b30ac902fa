package daemon

import (
	"os"

	"github.com/zlayer/overlayd/cmd/internal/version"
	"github.com/zlayer/overlayd/ipc"
)

// writeEndpoint records where the daemon listens, once it serves, in
// <data-dir>/overlayd/endpoint.json (ipc.WriteEndpoint): `overlayctl
// --data-dir D` finds a daemon started with --socket elsewhere. A failure
// is logged and reported as a problem; the daemon serves on.
func (d *Daemon) writeEndpoint(socket string) {
	ver, _ := version.Get()
	ep := ipc.Endpoint{Socket: socket, PID: os.Getpid(), Version: ver, Protocol: version.Protocol}
	err := ipc.WriteEndpoint(d.cfg.DataDir, ep)
	if err != nil {
		d.log.Warn("cannot record the endpoint; overlayctl finds the daemon only with --socket", "file", ipc.EndpointPath(d.cfg.DataDir), "err", err)
	}
	d.probs.Set("endpoint", err)
}

// removeEndpoint removes the endpoint file at a clean stop (if it is
// still this process's).
func (d *Daemon) removeEndpoint() {
	if err := ipc.RemoveEndpoint(d.cfg.DataDir, os.Getpid()); err != nil {
		d.log.Warn("cannot remove the endpoint file", "err", err)
	}
}
