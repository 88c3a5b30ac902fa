package projections

import (
	"fmt"
	"net/netip"
)

// CheckInvariants verifies the state's cross-aggregate promises: every held
// address is a usable address of the pool it was taken from, and is held by
// exactly the object that records it (no address in two places); every
// attachment, gateway and node address is in the address book; every
// windows_container has a bare lowercase namespace GUID of its own, and no
// other attachment has one; every peer scope exists. It is used by tests and by `overlayctl journal verify`.
func (s *State) CheckInvariants() error {
	want := map[netip.Addr]Owner{}
	claim := func(a netip.Addr, o Owner) error {
		if prev, dup := want[a]; dup {
			return fmt.Errorf("address %s is in two places: %s %s and %s %s", a, prev.Kind, prev.Ref, o.Kind, o.Ref)
		}
		want[a] = o
		return nil
	}
	if g := s.Global; g != nil {
		if !g.ClusterCIDR.Contains(g.Slice.Addr()) || g.Slice.Bits() < g.ClusterCIDR.Bits() {
			return fmt.Errorf("slice %s outside cluster %s", g.Slice, g.ClusterCIDR)
		}
		if err := claim(g.NodeIP, Owner{Kind: OwnerNode, Pool: poolSlice}); err != nil {
			return err
		}
	}
	for name, sv := range s.Services {
		if s.Global != nil && sv.Subnet.Overlaps(s.Global.Slice) {
			return fmt.Errorf("service %s subnet %s overlaps the slice %s", name, sv.Subnet, s.Global.Slice)
		}
		for other, o := range s.Services {
			if other != name && sv.Subnet.Overlaps(o.Subnet) {
				return fmt.Errorf("services %s and %s overlap (%s, %s)", name, other, sv.Subnet, o.Subnet)
			}
		}
		if err := claim(sv.Gateway, Owner{Kind: OwnerGateway, Pool: servicePool(name)}); err != nil {
			return err
		}
	}
	guids := map[string]string{}
	for key, a := range s.Attachments {
		if a.Handle.Key() != key {
			return fmt.Errorf("attachment %s filed under %s", a.Handle.Key(), key)
		}
		if a.Handle.Platform == PlatformWindows {
			if g, ok := CanonicalGUID(a.NamespaceGUID); !ok || g != a.NamespaceGUID {
				return fmt.Errorf("windows attachment %s has namespace GUID %q, not a bare lowercase GUID", key, a.NamespaceGUID)
			}
			if other, dup := guids[a.NamespaceGUID]; dup {
				return fmt.Errorf("attachments %s and %s share namespace GUID %s", key, other, a.NamespaceGUID)
			}
			guids[a.NamespaceGUID] = key
		} else if a.NamespaceGUID != "" {
			return fmt.Errorf("attachment %s is no windows_container but has namespace GUID %s", key, a.NamespaceGUID)
		}
		if a.Handle.Platform == PlatformGuest {
			if err := claim(a.IP, Owner{Kind: OwnerGuest, Pool: poolSlice, Ref: a.Handle.ID}); err != nil {
				return err
			}
			if p := s.peer(Scope{}, a.PublicKey); p == nil || p.Guest != a.Handle.ID {
				return fmt.Errorf("guest %s has no peer %s", a.Handle.ID, a.PublicKey)
			}
			continue
		}
		if _, ok := s.Services[a.Service]; !ok {
			return fmt.Errorf("attachment %s in unknown service %s", key, a.Service)
		}
		if err := claim(a.IP, Owner{Kind: OwnerContainer, Pool: servicePool(a.Service), Ref: key}); err != nil {
			return err
		}
		if a.GlobalIP.IsValid() {
			if err := claim(a.GlobalIP, Owner{Kind: OwnerContainer, Pool: poolSlice, Ref: key}); err != nil {
				return err
			}
		}
	}
	for a, o := range s.IPAM.Owners {
		p, ok := s.PoolPrefix(o.Pool)
		if !ok {
			return fmt.Errorf("address %s held by %s from unknown pool %s", a, o.Kind, o.Pool)
		}
		if !usable(p, a) {
			return fmt.Errorf("address %s is not a usable address of its pool %s (%s)", a, o.Pool, p)
		}
		if o.Kind == OwnerReservation {
			if err := claim(a, o); err != nil {
				return err
			}
		}
		if w, ok := want[a]; !ok || w != o {
			return fmt.Errorf("address %s is booked as %+v but held by %+v", a, o, w)
		}
	}
	if len(want) != len(s.IPAM.Owners) {
		for a, w := range want {
			if _, ok := s.IPAM.Owners[a]; !ok {
				return fmt.Errorf("address %s is used by %s %s but not booked", a, w.Kind, w.Ref)
			}
		}
	}
	for scope, m := range s.Peers {
		if scope == "global" {
			for k, p := range m {
				if p.Guest != "" && s.Global == nil {
					return fmt.Errorf("guest peer %s without a global overlay", k)
				}
			}
		} else if sv, ok := s.Services[scope[len("service:"):]]; !ok || sv.Dedicated == nil {
			return fmt.Errorf("peers in scope %s without a dedicated service", scope)
		}
		for k, p := range m {
			if p.PublicKey != k {
				return fmt.Errorf("peer %s filed under %s", p.PublicKey, k)
			}
		}
	}
	return nil
}
