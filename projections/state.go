package projections

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
)

// SnapshotSchema is the version of State's snapshot form (EncodeSnapshot).
// Bump it whenever a field changes meaning or layout: an older snapshot is
// then ignored and the state is rebuilt by a full replay.
//
//	1  JSON body
//	2  binary body (codec.go)
//	3  attachments carry a namespace GUID (windows_container)
const SnapshotSchema = 3

// State is the whole projected state of one node. Its canonical JSON form
// is the `overlayctl state -o json` output: maps marshal with sorted keys and
// slices are kept sorted, so equal states give equal bytes. Snapshots use
// the binary codec in codec.go.
type State struct {
	// Seq is the sequence number of the last event applied.
	Seq         uint64                      `json:"seq"`
	Node        Node                        `json:"node"`
	Global      *Global                     `json:"global,omitempty"`
	Services    map[string]*Service         `json:"services"`
	IPAM        IPAM                        `json:"ipam"`
	Peers       map[string]map[string]*Peer `json:"peers"`
	Attachments map[string]*Attachment      `json:"attachments"`
	DNS         map[string]*DNSRecord       `json:"dns"`
}

// New returns the empty state of a node that has journaled nothing.
func New() *State {
	return &State{
		Services:    map[string]*Service{},
		IPAM:        IPAM{Owners: map[netip.Addr]Owner{}, Cursors: map[string]netip.Addr{}},
		Peers:       map[string]map[string]*Peer{},
		Attachments: map[string]*Attachment{},
		DNS:         map[string]*DNSRecord{},
	}
}

// Apply folds one event into the state. It returns an error wrapping
// ErrCorrupt when the event contradicts the state, which never happens for a
// history Decide produced; the state must then be discarded.
func (s *State) Apply(ev Event) error {
	switch e := ev.(type) {
	case *NodeIDSet:
		s.Node.ID = e.NodeID
	case *NodeKeyAnnounced:
		s.Node.Announced = e.PublicKey
	case *NodeIdentitySet:
		s.Node.PublicKey = e.PublicKey
	case *GlobalOverlaySetUp:
		return s.applyGlobalSetUp(e)
	case *GlobalNATChanged:
		if s.Global == nil {
			return corrupt("global_nat_changed without a global overlay")
		}
		s.Global.NAT = e.NATEnabled
	case *GlobalOverlayTornDown:
		return s.applyGlobalTornDown()
	case *ServiceSetUp:
		return s.applyServiceSetUp(e)
	case *ServiceTornDown:
		return s.applyServiceTornDown(e)
	case *IPReserved:
		return s.take(e.IP, Owner{Kind: OwnerReservation, Pool: e.Pool})
	case *IPReleased:
		o, ok := s.IPAM.Owners[e.IP]
		if !ok || o.Kind != OwnerReservation {
			return corrupt("ip_released %s is not a reservation", e.IP)
		}
		delete(s.IPAM.Owners, e.IP)
	case *ContainerAttached:
		return s.applyContainerAttached(e)
	case *ContainerDetached:
		return s.applyContainerDetached(e)
	case *AttachmentGlobalLeft:
		return s.applyGlobalLeft(e)
	case *GuestAttached:
		return s.applyGuestAttached(e)
	case *GuestKeyRotated:
		return s.applyGuestKeyRotated(e)
	case *GuestDetached:
		return s.applyGuestDetached(e)
	case *PeerAdded:
		return s.applyPeerAdded(e)
	case *PeerUpdated:
		return s.applyPeerUpdated(e)
	case *PeerRemoved:
		return s.applyPeerRemoved(e)
	case *PeerAllowedIPAdded:
		return s.applyAllowedIPAdded(e)
	case *PeerAllowedIPRemoved:
		return s.applyAllowedIPRemoved(e)
	case *PeerEndpointObserved:
		p := s.peer(e.Scope, e.PublicKey)
		if p == nil {
			return corrupt("peer_endpoint_observed for unknown peer %s", e.PublicKey)
		}
		p.ObservedEndpoint = e.Endpoint
	case *DNSRegistered:
		s.applyDNSRegistered(e)
	case *DNSUnregistered:
		delete(s.DNS, e.Name)
	case *JournalRepaired:
		return s.applyJournalRepaired(e)
	default:
		return fmt.Errorf("%w: %T", ErrUnknownEvent, ev)
	}
	return nil
}

// Keys names what an event changed, as "kind/name" strings: node, global,
// service/<name>, peer/<scope>/<key>, attachment/<handle>, dns/<name>. The
// daemon hands them to the effect reconcilers.
func Keys(ev Event) []string {
	switch e := ev.(type) {
	case *NodeIDSet, *NodeKeyAnnounced, *NodeIdentitySet:
		return []string{"node"}
	case *GlobalOverlaySetUp, *GlobalNATChanged, *GlobalOverlayTornDown:
		return []string{"global"}
	case *ServiceSetUp:
		return []string{"service/" + e.Service}
	case *ServiceTornDown:
		return []string{"service/" + e.Service}
	case *IPReserved:
		return []string{"ipam/" + e.IP.String()}
	case *IPReleased:
		return []string{"ipam/" + e.IP.String()}
	case *ContainerAttached:
		return []string{"attachment/" + e.Handle.Key()}
	case *ContainerDetached:
		return []string{"attachment/" + e.Handle.Key()}
	case *AttachmentGlobalLeft:
		return []string{"attachment/" + e.Handle.Key()}
	case *GuestAttached:
		return []string{"attachment/" + GuestHandle(e.ID).Key(), "peer/global/" + e.PublicKey}
	case *GuestKeyRotated:
		return []string{"attachment/" + GuestHandle(e.ID).Key(), "peer/global/" + e.PublicKey, "peer/global/" + e.OldPublicKey}
	case *GuestDetached:
		return []string{"attachment/" + GuestHandle(e.ID).Key(), "peer/global/" + e.PublicKey}
	case *PeerAdded:
		return []string{"peer/" + e.Scope.Key() + "/" + e.PublicKey}
	case *PeerUpdated:
		return []string{"peer/" + e.Scope.Key() + "/" + e.PublicKey}
	case *PeerRemoved:
		return []string{"peer/" + e.Scope.Key() + "/" + e.PublicKey}
	case *PeerAllowedIPAdded:
		return []string{"peer/" + e.Scope.Key() + "/" + e.PublicKey}
	case *PeerAllowedIPRemoved:
		return []string{"peer/" + e.Scope.Key() + "/" + e.PublicKey}
	case *PeerEndpointObserved:
		return []string{"peer/" + e.Scope.Key() + "/" + e.PublicKey}
	case *DNSRegistered:
		return []string{"dns/" + e.Name}
	case *DNSUnregistered:
		return []string{"dns/" + e.Name}
	}
	return nil
}

// Clone returns a deep copy of s.
func (s *State) Clone() *State {
	c := &State{Seq: s.Seq, Node: s.Node}
	if s.Global != nil {
		g := *s.Global
		c.Global = &g
	}
	c.Services = make(map[string]*Service, len(s.Services))
	for k, v := range s.Services {
		sv := *v
		if v.Dedicated != nil {
			d := *v.Dedicated
			sv.Dedicated = &d
		}
		c.Services[k] = &sv
	}
	c.IPAM.Owners = make(map[netip.Addr]Owner, len(s.IPAM.Owners))
	for k, v := range s.IPAM.Owners {
		c.IPAM.Owners[k] = v
	}
	c.IPAM.Cursors = make(map[string]netip.Addr, len(s.IPAM.Cursors))
	for k, v := range s.IPAM.Cursors {
		c.IPAM.Cursors[k] = v
	}
	c.Peers = make(map[string]map[string]*Peer, len(s.Peers))
	for scope, m := range s.Peers {
		cm := make(map[string]*Peer, len(m))
		for k, p := range m {
			cp := *p
			cp.AllowedIPs = append([]netip.Prefix(nil), p.AllowedIPs...)
			cm[k] = &cp
		}
		c.Peers[scope] = cm
	}
	c.Attachments = make(map[string]*Attachment, len(s.Attachments))
	for k, v := range s.Attachments {
		a := *v
		c.Attachments[k] = &a
	}
	c.DNS = make(map[string]*DNSRecord, len(s.DNS))
	for k, v := range s.DNS {
		r := *v
		c.DNS[k] = &r
	}
	return c
}

// CanonicalJSON returns the canonical JSON form of the state.
func (s *State) CanonicalJSON() ([]byte, error) { return json.Marshal(s) }

// ParseCanonicalJSON rebuilds a state from CanonicalJSON's output.
func ParseCanonicalJSON(b []byte) (*State, error) {
	s := New()
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("projections: decode snapshot: %w", err)
	}
	// Maps absent from the JSON (older writers, empty states) stay usable.
	if s.Services == nil {
		s.Services = map[string]*Service{}
	}
	if s.IPAM.Owners == nil {
		s.IPAM.Owners = map[netip.Addr]Owner{}
	}
	if s.IPAM.Cursors == nil {
		s.IPAM.Cursors = map[string]netip.Addr{}
	}
	if s.Peers == nil {
		s.Peers = map[string]map[string]*Peer{}
	}
	if s.Attachments == nil {
		s.Attachments = map[string]*Attachment{}
	}
	if s.DNS == nil {
		s.DNS = map[string]*DNSRecord{}
	}
	return s, nil
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
