package daemon

import (
	"os"
	"runtime/debug"

	"github.com/zlayer/overlayd/ipc"
)

// protocolVersion is the wire protocol the daemon speaks.
const protocolVersion = 1

// buildVersion is the daemon's version for the endpoint file: the main
// module's version, or "devel" for a build from a work tree.
// (cmd/internal/version.Version, once it exists, says the same.)
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// writeEndpoint records where the daemon listens, once it serves, in
// <data-dir>/overlayd/endpoint.json (ipc.WriteEndpoint): `overlayctl
// --data-dir D` finds a daemon started with --socket elsewhere. A failure
// is logged and reported as a problem; the daemon serves on.
func (d *Daemon) writeEndpoint(socket string) {
	ep := ipc.Endpoint{Socket: socket, PID: os.Getpid(), Version: buildVersion(), Protocol: protocolVersion}
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
