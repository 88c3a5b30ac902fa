// Package nat keeps the daemon's own nftables table (inet zlayer_overlayd)
// equal to the projected state: when the global overlay has nat_enabled,
// traffic from the node's slice and service subnets that leaves through a
// non-overlay interface to a non-overlay address is masqueraded, and the
// forward hook accepts traffic between service bridges and the WireGuard
// devices (and out of the bridges to the world, with its replies). The
// table is rebuilt atomically in one netlink batch; nothing else in the
// ruleset is read or written. Turning NAT off or tearing the overlay down
// deletes the table, which is everything the daemon added.
//
// # Owner mark
//
// The table carries the journal id of the daemon that made it
// (effects.Owner.Journal), as a set named "owner" of type mark holding one
// element whose comment is "zlayer-overlayd owner journal=<id>" (the set
// has the same comment, for people reading `nft list`). Not a table
// comment: google/nftables v0.3.0 can neither write nor read table
// userdata; and not the set's own comment, which it writes but does not
// read back. Element comments make the round trip, cost nothing on the
// packet path (no rule looks the set up), and the mark lives and dies with
// the table.
//
// The reconciler adopts, rebuilds or deletes the table only when the mark
// names its own journal, or when the table has no mark and the journal is
// a legacy one (Owner.Legacy: from before journals had ids), which then
// marks it at the rebuild. A table of this name marked by another journal,
// or unmarked for a journal that is not a legacy one, is left exactly as it
// is, whatever the state says (NAT on or off), and every pass reports it
// (ErrNotOwner, naming the owner) until it is removed by hand or its owner
// takes it away. Only the journal is compared: the table lives in the
// daemon's own network namespace, so Owner.Home adds nothing.
//
// # Errors
//
// Reconcile's errors are effects.KeyErrors under "global", the object
// whose nat_enabled the table serves. After any error the nftables
// connection is dropped (a failed batch may leave messages queued) and the
// next pass dials again and compares the table with the kernel's.
package nat

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/zlayer/overlayd/projections"
)

// Table is the name of the daemon's table (family inet); the table is the
// ownership mark of everything in it.
const Table = "zlayer_overlayd"

// Config is the desired content of the table.
type Config struct {
	// Enabled: the table exists. Everything below is empty otherwise.
	Enabled bool
	// Sources are masqueraded when they leave the overlay: the slice and
	// the local service subnets.
	Sources []netip.Prefix
	// Overlay are destinations never masqueraded: the cluster CIDR, the
	// slice and the service subnets.
	Overlay []netip.Prefix
	// Bridges and Devices are the service bridges and the WireGuard
	// devices (global and dedicated), sorted.
	Bridges, Devices []string
}

// Desired derives the table's content from the state.
func Desired(st *projections.State) Config {
	g := st.Global
	if g == nil || !g.NAT {
		return Config{}
	}
	c := Config{Enabled: true, Sources: []netip.Prefix{g.Slice}, Overlay: []netip.Prefix{g.ClusterCIDR, g.Slice}, Devices: []string{g.Device}}
	for _, sv := range st.Services {
		c.Sources = append(c.Sources, sv.Subnet)
		c.Overlay = append(c.Overlay, sv.Subnet)
		if sv.Bridge != "" {
			c.Bridges = append(c.Bridges, sv.Bridge)
		}
		if sv.Dedicated != nil {
			c.Devices = append(c.Devices, sv.Dedicated.Device)
		}
	}
	c.Sources = projections.SortPrefixes(c.Sources)
	c.Overlay = projections.SortPrefixes(c.Overlay)
	slices.Sort(c.Bridges)
	slices.Sort(c.Devices)
	c.Devices = slices.Compact(c.Devices)
	return c
}

// Equal reports whether two configs are the same (Desired gives every
// list sorted, so equal states give equal configs).
func (c Config) Equal(o Config) bool {
	return c.Enabled == o.Enabled && slices.Equal(c.Bridges, o.Bridges) && slices.Equal(c.Devices, o.Devices) &&
		slices.Equal(c.Sources, o.Sources) && slices.Equal(c.Overlay, o.Overlay)
}

// Relevant reports whether a change key concerns the table.
func Relevant(key string) bool { return key == "global" || strings.HasPrefix(key, "service/") }

// Range is an inclusive address range.
type Range struct{ From, To netip.Addr }

// Merge returns the prefixes of one family (IPv4 when v4) as sorted,
// disjoint, non-adjacent ranges: the form an nftables interval set needs
// (the kernel rejects overlapping elements).
func Merge(ps []netip.Prefix, v4 bool) []Range {
	var rs []Range
	for _, p := range ps {
		if !p.IsValid() || p.Addr().Is4() != v4 {
			continue
		}
		p = p.Masked()
		rs = append(rs, Range{p.Addr(), lastAddr(p)})
	}
	slices.SortFunc(rs, func(a, b Range) int { return a.From.Compare(b.From) })
	var out []Range
	for _, r := range rs {
		if n := len(out); n > 0 {
			last := &out[n-1]
			if next := last.To.Next(); r.From.Compare(last.To) <= 0 || (next.IsValid() && r.From == next) {
				if r.To.Compare(last.To) > 0 {
					last.To = r.To
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
