package daemon

import (
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// hostAddr is the address guests should reach this node at when no
// --advertise-address is given: the preferred source address of the
// route to the default gateway (the underlay: the interface holding the
// default route, IPv4 first, then IPv6), never an address inside an
// overlay prefix or on a link the daemon made. Without such a route it
// falls back to the first global address of an up interface that is not
// the daemon's. It reads the calling thread's network namespace.
func hostAddr(o ownedNet) netip.Addr {
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		if a := defaultRouteAddr(o, family); a.IsValid() {
			return a
		}
	}
	return firstGlobalAddr(o, func(name string) string {
		if l, err := netlink.LinkByName(name); err == nil {
			return l.Attrs().Alias
		}
		return ""
	})
}

// defaultRouteAddr is the source address of the first usable default
// route of family in the main table (lowest metric first).
func defaultRouteAddr(o ownedNet, family int) netip.Addr {
	routes, err := netlink.RouteListFiltered(family, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return netip.Addr{}
	}
	var defaults []netlink.Route
	for _, r := range routes {
		if r.Dst == nil || isAllZero(r.Dst) {
			defaults = append(defaults, r)
		}
	}
	slices.SortStableFunc(defaults, func(a, b netlink.Route) int { return a.Priority - b.Priority })
	for _, r := range defaults {
		linkIndex, gw := r.LinkIndex, r.Gw
		if len(r.MultiPath) > 0 {
			linkIndex, gw = r.MultiPath[0].LinkIndex, r.MultiPath[0].Gw
		}
		link, err := netlink.LinkByIndex(linkIndex)
		if err != nil {
			continue
		}
		attrs := link.Attrs()
		if attrs.Flags&net.FlagUp == 0 || o.ownsLink(attrs.Name, attrs.Alias) {
			continue
		}
		if a := ipAddr(r.Src); o.usable(a) {
			return a
		}
		if gw != nil {
			// The kernel's choice of source towards the gateway (a
			// lookup: nothing is sent).
			if got, err := netlink.RouteGet(gw); err == nil && len(got) > 0 {
				if a := ipAddr(got[0].Src); o.usable(a) && got[0].LinkIndex == linkIndex {
					return a
				}
			}
		}
		addrs, err := netlink.AddrList(link, family)
		if err != nil {
			continue
		}
		for _, ad := range addrs {
			if a := ipAddr(ad.IP); o.usable(a) {
				return a
			}
		}
	}
	return netip.Addr{}
}

func isAllZero(n *net.IPNet) bool {
	ones, _ := n.Mask.Size()
	return ones == 0
}

func ipAddr(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}
