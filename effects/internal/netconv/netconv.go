// Package netconv converts between net/netip values and the net.IPNet the
// netlink package speaks, for the effects that program the kernel.
package netconv

import (
	"net"
	"net/netip"
)

// IPNet is p as a net.IPNet.
func IPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// HostNet is a as a host prefix (/32 or /128).
func HostNet(a netip.Addr) *net.IPNet {
	return IPNet(netip.PrefixFrom(a, a.BitLen()))
}

// Prefix is n as a netip.Prefix (IPv4-mapped addresses unmapped); false
// for nil or a malformed n.
func Prefix(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}
