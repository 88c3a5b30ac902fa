package projections

import (
	"encoding/binary"
	"math"
	"net/netip"
)

// Slot arithmetic: a cluster CIDR cut into equal sub-prefixes ("slots"), as
// the reference allocators do for node slices and service subnets.

// fnv1a64 is FNV-1a, 64 bit, over the concatenation of parts.
func fnv1a64(parts ...[]byte) uint64 {
	h := uint64(0xcbf29ce484222325)
	for _, p := range parts {
		for _, b := range p {
			h ^= uint64(b)
			h *= 0x100000001b3
		}
	}
	return h
}

// ServiceSubnetHash is the reference hash for a service subnet:
// FNV-1a-64 over service ‖ 0x1F ‖ node key.
func ServiceSubnetHash(service, nodeKey string) uint64 {
	return fnv1a64([]byte(service), []byte{0x1f}, []byte(nodeKey))
}

// SliceHash is the hash a node uses to derive its own slice: FNV-1a-64 over
// its node key (as the reference NodeSliceAllocator does).
func SliceHash(nodeKey string) uint64 { return fnv1a64([]byte(nodeKey)) }

// numSlots is how many /bits slots the cluster holds; like the reference it
// saturates at 2^64-1 when the difference is 64 bits or more.
func numSlots(cluster netip.Prefix, bits int) uint64 {
	d := bits - cluster.Bits()
	if d >= 64 {
		return math.MaxUint64
	}
	return uint64(1) << uint(d)
}

// slotAt returns slot idx of size /bits inside cluster.
func slotAt(cluster netip.Prefix, bits int, idx uint64) netip.Prefix {
	shift := uint(cluster.Addr().BitLen() - bits)
	return netip.PrefixFrom(addOffset(cluster.Masked().Addr(), idx, shift), bits)
}

// addOffset returns a + (off << shift), wrapping inside the address family.
func addOffset(a netip.Addr, off uint64, shift uint) netip.Addr {
	if a.Is4() {
		b := a.As4()
		v := binary.BigEndian.Uint32(b[:])
		if shift < 32 {
			v += uint32(off << shift)
		}
		binary.BigEndian.PutUint32(b[:], v)
		return netip.AddrFrom4(b)
	}
	b := a.As16()
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	var addHi, addLo uint64
	switch {
	case shift == 0:
		addLo = off
	case shift < 64:
		addLo = off << shift
		addHi = off >> (64 - shift)
	case shift < 128:
		addHi = off << (shift - 64)
	}
	nlo := lo + addLo
	carry := uint64(0)
	if nlo < lo {
		carry = 1
	}
	hi += addHi + carry
	binary.BigEndian.PutUint64(b[:8], hi)
	binary.BigEndian.PutUint64(b[8:], nlo)
	return netip.AddrFrom16(b)
}

// probeSlot finds the first slot at or after hash mod numSlots (wrapping)
// that free accepts. ok is false when every slot was refused.
func probeSlot(cluster netip.Prefix, bits int, hash uint64, free func(netip.Prefix) bool) (netip.Prefix, bool) {
	n := numSlots(cluster, bits)
	start := hash % n
	// Each refused slot is taken by one of a handful of local objects, so the
	// loop ends after a few steps; the bound only guards a full cluster.
	for i := uint64(0); i < n; i++ {
		idx := start + i
		if idx >= n || idx < start {
			idx -= n
		}
		p := slotAt(cluster, bits, idx)
		if free(p) {
			return p, true
		}
		if i > 1<<20 {
			break
		}
	}
	return netip.Prefix{}, false
}

// firstHost is network+1: the gateway of a subnet, the node address of a slice.
func firstHost(p netip.Prefix) netip.Addr { return p.Masked().Addr().Next() }

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr()
	host := uint(a.BitLen() - p.Bits())
	if a.Is4() {
		b := a.As4()
		v := binary.BigEndian.Uint32(b[:]) | uint32((uint64(1)<<host)-1)
		binary.BigEndian.PutUint32(b[:], v)
		return netip.AddrFrom4(b)
	}
	b := a.As16()
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	switch {
	case host >= 128:
		hi, lo = math.MaxUint64, math.MaxUint64
	case host >= 64:
		lo = math.MaxUint64
		hi |= (uint64(1) << (host - 64)) - 1
	default:
		lo |= (uint64(1) << host) - 1
	}
	binary.BigEndian.PutUint64(b[:8], hi)
	binary.BigEndian.PutUint64(b[8:], lo)
	return netip.AddrFrom16(b)
}

// usable reports whether a may be handed out from pool p: not the network
// address and, in IPv4, not the broadcast address.
func usable(p netip.Prefix, a netip.Addr) bool {
	if !p.Contains(a) || a == p.Masked().Addr() {
		return false
	}
	if a.Is4() && a == lastAddr(p) {
		return false
	}
	return true
}

// capacity is the number of addresses usable(p, ·) accepts, saturated.
func capacity(p netip.Prefix) uint64 {
	host := p.Addr().BitLen() - p.Bits()
	if host >= 64 {
		return math.MaxUint64
	}
	n := uint64(1) << uint(host)
	if p.Addr().Is4() {
		if n < 2 {
			return 0
		}
		return n - 2
	}
	return n - 1
}
