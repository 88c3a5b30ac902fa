//go:build !linux

package daemon

import "net/netip"

// hostAddr is the address guests should reach this node at when no
// --advertise-address is given; off Linux, the first global address of an
// up interface that is not the daemon's, outside the overlay's prefixes.
func hostAddr(o ownedNet) netip.Addr { return firstGlobalAddr(o, nil) }
