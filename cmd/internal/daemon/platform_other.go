//go:build !linux && !windows

package daemon

import (
	"net"

	"github.com/zlayer/overlayd/effects"
	"github.com/zlayer/overlayd/effects/bridge"
	"github.com/zlayer/overlayd/effects/dns"
	"github.com/zlayer/overlayd/effects/nat"
	"github.com/zlayer/overlayd/ipc"
)

// dataPlane: the Linux handlers, whose stubs say once that they do
// nothing on this platform, and DNS.
func (d *Daemon) dataPlane() []effects.Reconciler {
	return []effects.Reconciler{d.wg, bridge.New(d.log, d.detachGone, d.owner), dns.New(d.log, d.cfg.DNS), nat.New(d.log, d.owner)}
}

func (d *Daemon) listen(path string) (net.Listener, error) { return ipc.Listen(path) }
