package projections

import (
	"net/netip"
	"sort"
)

// Address management. Every address the node hands out, or holds for
// itself, has exactly one owner in IPAM.Owners; an address is free when it
// has none. Pools are the node slice ("slice") and each service subnet
// ("service:<name>"). Allocation is next-fit from the pool's cursor (the last
// address taken), so a just-released address is not reused at once.

const (
	poolSlice         = "slice"
	poolServicePrefix = "service:"
)

func servicePool(name string) string { return poolServicePrefix + name }

// OwnerKind says why an address is taken.
type OwnerKind string

const (
	OwnerNode        OwnerKind = "node"        // the node's overlay address
	OwnerGateway     OwnerKind = "gateway"     // a service bridge's gateway
	OwnerContainer   OwnerKind = "container"   // a container attachment (Ref = handle)
	OwnerReservation OwnerKind = "reservation" // allocate_ip
	OwnerGuest       OwnerKind = "guest"       // a guest-managed attachment (Ref = guest id)
)

// Owner is who holds an address, and from which pool.
type Owner struct {
	Kind OwnerKind `json:"kind"`
	Pool string    `json:"pool"`
	Ref  string    `json:"ref,omitempty"`
}

// IPAM is the address book of the node.
type IPAM struct {
	Owners  map[netip.Addr]Owner  `json:"owners"`
	Cursors map[string]netip.Addr `json:"cursors"`
}

type (
	IPReserved struct {
		IP   netip.Addr `json:"ip"`
		Pool string     `json:"pool"`
	}
	IPReleased struct {
		IP netip.Addr `json:"ip"`
	}
)

func (*IPReserved) EventType() string    { return "ip_reserved" }
func (*IPReserved) EventVersion() uint16 { return 1 }
func (*IPReleased) EventType() string    { return "ip_released" }
func (*IPReleased) EventVersion() uint16 { return 1 }

// PoolPrefix returns the prefix of a pool, if the pool exists.
func (s *State) PoolPrefix(pool string) (netip.Prefix, bool) {
	if pool == poolSlice {
		if s.Global == nil {
			return netip.Prefix{}, false
		}
		return s.Global.Slice, true
	}
	if len(pool) > len(poolServicePrefix) && pool[:len(poolServicePrefix)] == poolServicePrefix {
		if sv, ok := s.Services[pool[len(poolServicePrefix):]]; ok {
			return sv.Subnet, true
		}
	}
	return netip.Prefix{}, false
}

// take records a as held by o; Apply-time only.
func (s *State) take(a netip.Addr, o Owner) error {
	if prev, taken := s.IPAM.Owners[a]; taken {
		return corrupt("%s given to %s %s while %s", a, o.Kind, o.Ref, describeOwner(prev))
	}
	p, ok := s.PoolPrefix(o.Pool)
	if !ok || !usable(p, a) {
		return corrupt("%s is not a usable address of pool %q", a, o.Pool)
	}
	s.IPAM.Owners[a] = o
	s.IPAM.Cursors[o.Pool] = a
	return nil
}

// free releases a, which must be held by an owner of the given kind and ref.
func (s *State) free(a netip.Addr, kind OwnerKind, ref string) error {
	o, ok := s.IPAM.Owners[a]
	if !ok || o.Kind != kind || o.Ref != ref {
		return corrupt("%s is not held by %s %s", a, kind, ref)
	}
	delete(s.IPAM.Owners, a)
	return nil
}

// nextFree picks the next free address of pool after its cursor.
func (s *State) nextFree(field, pool, what string) (netip.Addr, error) {
	p, ok := s.PoolPrefix(pool)
	if !ok {
		return netip.Addr{}, errf(field, "pool %s does not exist", pool)
	}
	first := firstHost(p)
	last := lastAddr(p)
	start := first
	if c, ok := s.IPAM.Cursors[pool]; ok && c.IsValid() && c != last && p.Contains(c) {
		start = c.Next()
	}
	a := start
	network := p.Masked().Addr()
	is4 := network.Is4()
	limit := capacity(p)
	for i := uint64(0); i <= limit; i++ {
		if a != network && !(is4 && a == last) {
			if _, taken := s.IPAM.Owners[a]; !taken {
				return a, nil
			}
		}
		if a == last {
			a = first
		} else {
			a = a.Next()
		}
	}
	return netip.Addr{}, errf(field, "%s %s has no free address: all %d are in use", what, p, limit)
}

// addrsOf lists, sorted, the addresses of pool held by owners of kind.
func (s *State) addrsOf(pool string, kind OwnerKind) []netip.Addr {
	var out []netip.Addr
	for a, o := range s.IPAM.Owners {
		if o.Pool == pool && o.Kind == kind {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}

func (s *State) decideAllocateIP(c AllocateIP) (Decision, error) {
	pool, what := poolSlice, "node slice"
	if c.Service != "" {
		if err := ValidateLabel("service", c.Service); err != nil {
			return Decision{}, err
		}
		if _, ok := s.Services[c.Service]; ok {
			pool, what = servicePool(c.Service), "service "+c.Service+" subnet"
		}
	}
	if _, ok := s.PoolPrefix(pool); !ok {
		if c.Service != "" {
			return Decision{}, errf("service", "service %s is not set up and there is no global overlay to allocate from (setup_service_overlay or setup_global_overlay first)", c.Service)
		}
		return Decision{}, errf("service", "no service given and the global overlay is not set up (setup_global_overlay first)")
	}
	a, err := s.nextFree("service", pool, what)
	if err != nil {
		return Decision{}, err
	}
	return Decision{Events: []Event{&IPReserved{IP: a, Pool: pool}}, Reply: ReplyIP{IP: a}}, nil
}

func (s *State) decideReleaseIP(c ReleaseIP) (Decision, error) {
	if !c.IP.IsValid() {
		return Decision{}, errf("ip", "missing address")
	}
	o, held := s.IPAM.Owners[c.IP]
	if !held {
		for _, p := range s.localSubnets() {
			if p.Contains(c.IP) {
				return okWith() // already free: releasing again is a no-op
			}
		}
		return Decision{}, errf("ip", "%s is not in this node's slice or any of its service subnets", c.IP)
	}
	if o.Kind != OwnerReservation {
		hint := ""
		switch o.Kind {
		case OwnerContainer, OwnerGuest:
			hint = "; detach_container frees it"
		case OwnerGateway:
			hint = "; teardown_service_overlay frees it"
		case OwnerNode:
			hint = "; teardown_global_overlay frees it"
		}
		return Decision{}, errf("ip", "%s is %s and cannot be released%s", c.IP, describeOwner(o), hint)
	}
	return okWith(&IPReleased{IP: c.IP})
}
