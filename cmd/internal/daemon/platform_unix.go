//go:build !windows

package daemon

import (
	"net"

	"github.com/zlayer/overlayd/effects"
	"github.com/zlayer/overlayd/effects/bridge"
	"github.com/zlayer/overlayd/effects/dns"
	"github.com/zlayer/overlayd/effects/nat"
	"github.com/zlayer/overlayd/ipc"
)

// dataPlane is the node's effect handlers, in the order a full pass runs
// them: the WireGuard devices, the service bridges and containers' veths,
// DNS (it listens on the bridges' gateways), the nftables NAT table. On a
// platform other than Linux and Windows the bridge and NAT handlers are
// stubs that say once that they do nothing there.
func (d *Daemon) dataPlane() []effects.Reconciler {
	return []effects.Reconciler{d.wg, bridge.New(d.log, d.detachGone, d.owner), dns.New(d.log, d.cfg.DNS), nat.New(d.log, d.owner)}
}

// listen binds the daemon's unix socket (ipc.Listen).
func (d *Daemon) listen(path string) (net.Listener, error) { return ipc.Listen(path) }
