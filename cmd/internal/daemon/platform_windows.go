package daemon

import (
	"net"
	"strings"

	"golang.org/x/sys/windows"

	"github.com/zlayer/overlayd/effects"
	"github.com/zlayer/overlayd/effects/dns"
	"github.com/zlayer/overlayd/effects/hcn"
	"github.com/zlayer/overlayd/ipc"
)

// dataPlane is the node's effect handlers on Windows: the WireGuard
// devices, the HCN networks, endpoints and namespaces of windows_container
// attachments (effects/hcn), and DNS. Without HCN (no Host Networking
// Service, or a Windows without its v2 API) the daemon still serves and
// journals; every Windows attach is then answered err naming the reason,
// and status lists it (not readiness: it is what this node is, not a
// fault that comes and goes).
func (d *Daemon) dataPlane() []effects.Reconciler {
	recs := []effects.Reconciler{d.wg}
	if api, err := hcn.NewAPI(); err != nil {
		d.log.Warn("HCN is not available: windows_container attaches will fail", "err", err)
		d.platformProbs.Set("hcn", err)
	} else {
		recs = append(recs, hcn.New(api, d.log, d.owner, hcn.Config{}))
	}
	return append(recs, dns.New(d.log, d.cfg.DNS))
}

// listen serves the named pipe at path (ipc.DefaultSocketPath:
// \\.\pipe\zlayer-overlayd for the default data dir). The pipe admits
// SYSTEM and Administrators (ipc.PipeSDDL), and the members of
// --admin-group when it names a Windows group (a SID, or a name looked
// up with LookupAccountName): the Windows side of the Unix socket's group.
func (d *Daemon) listen(path string) (net.Listener, error) {
	var o ipc.PipeOptions
	if g := d.cfg.Authz.Group; g != "" {
		if strings.HasPrefix(strings.ToUpper(g), "S-1-") {
			o.GroupSID = g
		} else if sid, _, typ, err := windows.LookupSID("", g); err == nil && (typ == windows.SidTypeGroup || typ == windows.SidTypeWellKnownGroup || typ == windows.SidTypeAlias) {
			o.GroupSID = sid.String()
		} else if g != DefaultAdminGroup {
			d.log.Warn("--admin-group names no Windows group: the pipe admits only SYSTEM and Administrators", "group", g)
		}
	}
	return ipc.ListenWith(path, o)
}
