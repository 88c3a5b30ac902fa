package daemon

import (
	"net/netip"
	"strings"

	"github.com/zlayer/overlayd/projections"
)

// linkMarkPrefix starts the alias the daemon writes on every link it
// makes besides its WireGuard devices (effects/bridge/marks.go: bridges,
// the host ends of veths).
const linkMarkPrefix = "zlayer-overlayd "

// ownedNet is what the underlay address guests are told must never be:
// an address inside a prefix of the overlay (the cluster, the node's
// slice, a service subnet), or one on a link the daemon made (its
// WireGuard devices and bridges by name, anything with its alias mark).
type ownedNet struct {
	prefixes []netip.Prefix
	links    map[string]bool
}

// ownedOf collects st's overlay prefixes and link names.
func ownedOf(st *projections.State) ownedNet {
	o := ownedNet{links: map[string]bool{}}
	if g := st.Global; g != nil {
		o.prefixes = append(o.prefixes, g.ClusterCIDR, g.Slice)
		o.links[g.Device] = true
	}
	for _, sv := range st.Services {
		o.prefixes = append(o.prefixes, sv.Subnet)
		o.links[sv.Bridge] = true
		if sv.Dedicated != nil {
			o.links[sv.Dedicated.Device] = true
		}
	}
	return o
}

// ownsLink reports whether the link called name (with alias) is the
// daemon's.
func (o ownedNet) ownsLink(name, alias string) bool {
	return o.links[name] || strings.HasPrefix(alias, linkMarkPrefix)
}

// usable reports whether a may be advertised: global unicast and outside
// every overlay prefix.
func (o ownedNet) usable(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || !a.IsGlobalUnicast() {
		return false
	}
	for _, p := range o.prefixes {
		if p.IsValid() && p.Contains(a) {
			return false
		}
	}
	return true
}

// advertiseAddr is the underlay address guests are told to use:
// --advertise-address, else hostAddr against the decided state.
func (d *Daemon) advertiseAddr() netip.Addr {
	if d.cfg.AdvertiseAddr.IsValid() {
		return d.cfg.AdvertiseAddr
	}
	var o ownedNet
	d.decided.Read(func(st *projections.State) { o = ownedOf(st) })
	return hostAddr(o)
}
