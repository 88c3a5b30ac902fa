package daemon

import (
	"encoding/json"
	"maps"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/projections"
)

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// renderReply turns a decision's reply into its wire response.
func renderReply(r projections.Reply) ipc.Response {
	switch r := r.(type) {
	case projections.ReplyOK:
		return ipc.OK{}
	case projections.ReplyIP:
		return ipc.IPResult{IP: ipc.AddrOf(r.IP)}
	case projections.ReplyBridgeName:
		return ipc.BridgeName{Name: r.Name}
	case projections.ReplyAttached:
		out := ipc.Attached{IP: ipc.AddrOf(r.IP)}
		if r.NamespaceGUID != "" { // windows_container: the HCN namespace, bare and lowercase
			out.NamespaceGUID = strPtr(r.NamespaceGUID)
		}
		return out
	case projections.ReplyServiceOverlay:
		out := ipc.ServiceOverlay{Name: r.Name, Mode: ipc.Mode(r.Mode), OverlayIP: ipc.AddrPtr(r.OverlayIP)}
		if r.Subnet.IsValid() {
			out.Subnet = strPtr(r.Subnet.String())
		}
		if r.PublicKey != "" {
			port := r.Port
			out.WgPublicKey, out.WgPort = strPtr(r.PublicKey), &port
		}
		return out
	case projections.ReplyGuestConfig:
		out := ipc.GuestConfig{OverlayIP: ipc.AddrOf(r.IP), PrefixLen: r.PrefixLen, PublicKey: r.PublicKey,
			ListenPort: r.ListenPort, Peers: []ipc.PeerSpec{}, DNSServer: ipc.AddrPtr(r.DNSServer), DNSDomain: strPtr(r.DNSDomain)}
		for _, p := range r.Peers {
			out.Peers = append(out.Peers, ipc.PeerSpec{PublicKey: p.PublicKey, Endpoint: p.Endpoint,
				AllowedIPs: p.AllowedIPs, PersistentKeepaliveSecs: p.Keepalive})
		}
		return out
	}
	return ipc.Err{Message: "internal error: no rendering for this reply"}
}

// status answers the status op from the live state; statusLive then adds
// what the device reports.
func (d *Daemon) status(st *projections.State) ipc.Response {
	out := ipc.StatusResult{PublicKey: strPtr(d.nodePub), ServiceCount: uint32(len(st.Services))}
	if g := st.Global; g != nil {
		out.Interface = strPtr(g.Device)
		out.NodeIP = ipc.AddrPtr(g.NodeIP)
		out.OverlayCIDR = strPtr(g.ClusterCIDR.String())
		out.SliceCIDR = strPtr(g.Slice.String())
	}
	for _, p := range st.PeersOf(projections.Scope{}) {
		ep := p.Endpoint
		if p.ObservedEndpoint != "" {
			ep = p.ObservedEndpoint
		}
		out.Peers = append(out.Peers, ipc.PeerStatus{PublicKey: p.PublicKey, Endpoint: ep,
			AllowedIPs: projections.FormatPrefixes(p.AllowedIPs)})
	}
	out.PeerCount = uint32(len(out.Peers))
	for _, name := range sortedServices(st) {
		sv := st.Services[name]
		if sv.Dedicated == nil {
			continue
		}
		out.DedicatedServices = append(out.DedicatedServices, ipc.DedicatedServiceStatus{
			Service: name, Interface: sv.Dedicated.Device, PublicKey: sv.Dedicated.PublicKey,
			ListenPort: sv.Dedicated.Port, OverlayIP: ipc.AddrOf(sv.Gateway), Subnet: sv.Subnet.String(),
			PeerCount: uint32(len(st.Peers[projections.Scope{Service: name}.Key()])),
		})
	}
	return out
}

// statusLive fills in the endpoint each peer uses now (WireGuard roams),
// its last handshake as Unix time (0 = never), its byte counters and its
// health (handshake age against PeerUnhealthyAfter), from the global device.
func (d *Daemon) statusLive(r ipc.Response, _ []projections.Event) ipc.Response {
	out, ok := r.(ipc.StatusResult)
	if !ok {
		return r
	}
	// What is wrong now (extensions; a reference decoder ignores them).
	out.Problems = d.problems()
	if err := d.writable(); err != nil {
		out.Degraded = true
		out.DegradedSince = d.store.Health().Since.Unix()
	}
	if d.wg == nil || out.Interface == nil {
		return out
	}
	stats, err := d.wg.Stats(*out.Interface)
	if err != nil {
		return out // the device is not there: its problem is listed
	}
	byKey := map[string]int{}
	for i, p := range stats.Peers {
		byKey[p.PublicKey] = i
	}
	now := time.Now()
	for i := range out.Peers {
		out.Peers[i].Health = ipc.PeerUnhealthy
		j, ok := byKey[out.Peers[i].PublicKey]
		if !ok {
			continue // not on the device (yet): no handshake
		}
		ps := stats.Peers[j]
		if ps.Endpoint != "" {
			out.Peers[i].Endpoint = ps.Endpoint
		}
		if !ps.LastHandshake.IsZero() {
			out.Peers[i].LastHandshakeUnixSecs = ps.LastHandshake.Unix()
		}
		out.Peers[i].RxBytes, out.Peers[i].TxBytes = ps.RxBytes, ps.TxBytes
		out.Peers[i].Health = peerHealth(now, ps.LastHandshake, d.cfg.PeerUnhealthyAfter)
	}
	return out
}

// peerHealth is "healthy" when the last handshake is at most threshold
// old, else "unhealthy" (also when there was none), as the health monitor
// judges it.
func peerHealth(now, last time.Time, threshold time.Duration) string {
	if !last.IsZero() && now.Sub(last) <= threshold {
		return ipc.PeerHealthy
	}
	return ipc.PeerUnhealthy
}

func sortedServices(st *projections.State) []string {
	return slices.Sorted(maps.Keys(st.Services))
}

// firstGlobalAddr is the first global unicast IPv4 address of an up,
// non-loopback interface the daemon did not make, outside the overlay's
// prefixes (else such an IPv6 address), or the zero Addr: hostAddr's
// fallback when no default route says which interface is the underlay.
// alias, when set, gives a link's alias (the daemon's mark).
func firstGlobalAddr(o ownedNet, alias func(name string) string) netip.Addr {
	ifs, err := net.Interfaces()
	if err != nil {
		return netip.Addr{}
	}
	var v6 netip.Addr
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 || o.links[ifc.Name] {
			continue
		}
		if alias != nil && o.ownsLink(ifc.Name, alias(ifc.Name)) {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			pfx, err := netip.ParsePrefix(a.String())
			if err != nil || !o.usable(pfx.Addr()) {
				continue
			}
			if pfx.Addr().Is4() {
				return pfx.Addr()
			}
			if !v6.IsValid() {
				v6 = pfx.Addr()
			}
		}
	}
	return v6
}
