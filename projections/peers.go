package projections

import (
	"net/netip"
	"slices"
	"sort"
)

// Scope selects the device a peer belongs to: the global device, or the
// dedicated device of one service.
type Scope struct {
	Service string `json:"service,omitempty"`
}

// Key is "global" or "service:<name>".
func (sc Scope) Key() string {
	if sc.Service == "" {
		return "global"
	}
	return "service:" + sc.Service
}

func (sc Scope) String() string {
	if sc.Service == "" {
		return "global"
	}
	return "service " + sc.Service
}

// Peer is a WireGuard peer of one device.
type Peer struct {
	PublicKey  string         `json:"public_key"`
	Endpoint   string         `json:"endpoint,omitempty"`
	AllowedIPs []netip.Prefix `json:"allowed_ips"`
	Keepalive  uint64         `json:"keepalive,omitempty"`
	// Guest is set for a peer registered by a guest-managed attach.
	Guest string `json:"guest,omitempty"`
	// ObservedEndpoint is the endpoint the device last reported for the peer
	// (WireGuard roaming), recorded by nat_tick.
	ObservedEndpoint string `json:"observed_endpoint,omitempty"`
}

type (
	PeerAdded struct {
		Scope      Scope          `json:"scope"`
		PublicKey  string         `json:"public_key"`
		Endpoint   string         `json:"endpoint,omitempty"`
		AllowedIPs []netip.Prefix `json:"allowed_ips"`
		Keepalive  uint64         `json:"keepalive,omitempty"`
	}
	// PeerUpdated carries the peer's whole new specification.
	PeerUpdated PeerAdded
	PeerRemoved struct {
		Scope     Scope  `json:"scope"`
		PublicKey string `json:"public_key"`
	}
	PeerAllowedIPAdded struct {
		Scope     Scope        `json:"scope"`
		PublicKey string       `json:"public_key"`
		CIDR      netip.Prefix `json:"cidr"`
	}
	PeerAllowedIPRemoved PeerAllowedIPAdded
	PeerEndpointObserved struct {
		Scope     Scope  `json:"scope"`
		PublicKey string `json:"public_key"`
		Endpoint  string `json:"endpoint"`
	}
)

func (*PeerAdded) EventType() string               { return "peer_added" }
func (*PeerAdded) EventVersion() uint16            { return 1 }
func (*PeerUpdated) EventType() string             { return "peer_updated" }
func (*PeerUpdated) EventVersion() uint16          { return 1 }
func (*PeerRemoved) EventType() string             { return "peer_removed" }
func (*PeerRemoved) EventVersion() uint16          { return 1 }
func (*PeerAllowedIPAdded) EventType() string      { return "peer_allowed_ip_added" }
func (*PeerAllowedIPAdded) EventVersion() uint16   { return 1 }
func (*PeerAllowedIPRemoved) EventType() string    { return "peer_allowed_ip_removed" }
func (*PeerAllowedIPRemoved) EventVersion() uint16 { return 1 }
func (*PeerEndpointObserved) EventType() string    { return "peer_endpoint_observed" }
func (*PeerEndpointObserved) EventVersion() uint16 { return 1 }

func (s *State) peer(sc Scope, key string) *Peer { return s.Peers[sc.Key()][key] }

// PeersOf returns the peers of a scope sorted by public key.
func (s *State) PeersOf(sc Scope) []*Peer {
	m := s.Peers[sc.Key()]
	out := make([]*Peer, 0, len(m))
	for _, p := range m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PublicKey < out[j].PublicKey })
	return out
}

func (s *State) putPeer(sc Scope, p *Peer) error {
	m := s.Peers[sc.Key()]
	if m == nil {
		m = map[string]*Peer{}
		s.Peers[sc.Key()] = m
	}
	if _, dup := m[p.PublicKey]; dup {
		return corrupt("peer %s already exists in scope %s", p.PublicKey, sc)
	}
	m[p.PublicKey] = p
	return nil
}

func (s *State) applyPeerAdded(e *PeerAdded) error {
	return s.putPeer(e.Scope, &Peer{PublicKey: e.PublicKey, Endpoint: e.Endpoint,
		AllowedIPs: append([]netip.Prefix(nil), e.AllowedIPs...), Keepalive: e.Keepalive})
}

func (s *State) applyPeerUpdated(e *PeerUpdated) error {
	p := s.peer(e.Scope, e.PublicKey)
	if p == nil {
		return corrupt("peer_updated for unknown peer %s", e.PublicKey)
	}
	if p.Endpoint != e.Endpoint {
		p.ObservedEndpoint = ""
	}
	p.Endpoint = e.Endpoint
	p.AllowedIPs = append([]netip.Prefix(nil), e.AllowedIPs...)
	p.Keepalive = e.Keepalive
	return nil
}

func (s *State) applyPeerRemoved(e *PeerRemoved) error {
	if s.peer(e.Scope, e.PublicKey) == nil {
		return corrupt("peer_removed for unknown peer %s", e.PublicKey)
	}
	delete(s.Peers[e.Scope.Key()], e.PublicKey)
	if len(s.Peers[e.Scope.Key()]) == 0 {
		delete(s.Peers, e.Scope.Key())
	}
	return nil
}

func (s *State) applyAllowedIPAdded(e *PeerAllowedIPAdded) error {
	p := s.peer(e.Scope, e.PublicKey)
	if p == nil {
		return corrupt("peer_allowed_ip_added for unknown peer %s", e.PublicKey)
	}
	p.AllowedIPs = SortPrefixes(append(p.AllowedIPs, e.CIDR))
	return nil
}

func (s *State) applyAllowedIPRemoved(e *PeerAllowedIPRemoved) error {
	p := s.peer(e.Scope, e.PublicKey)
	if p == nil {
		return corrupt("peer_allowed_ip_removed for unknown peer %s", e.PublicKey)
	}
	out := p.AllowedIPs[:0]
	for _, q := range p.AllowedIPs {
		if q != e.CIDR {
			out = append(out, q)
		}
	}
	if len(out) == 0 {
		out = nil
	}
	p.AllowedIPs = out
	return nil
}

// checkScope verifies that peers can be added in sc. Global peers may be
// added before setup_global_overlay: they are journaled and put on the
// device when it exists.
func (s *State) checkScope(sc Scope) error {
	if sc.Service == "" {
		return nil
	}
	if err := ValidateLabel("scope.service", sc.Service); err != nil {
		return err
	}
	sv, ok := s.Services[sc.Service]
	if !ok {
		return errf("scope.service", "service %s is not set up on this node", sc.Service)
	}
	if sv.Dedicated == nil {
		return errf("scope.service", "service %s is %s; peers with a service scope need a dedicated service overlay", sc.Service, sv.Mode)
	}
	return nil
}

// checkAllowedIP refuses a prefix that would steal this node's own traffic
// or that another peer of the same device already routes.
func (s *State) checkAllowedIP(field string, sc Scope, key string, p netip.Prefix) error {
	if s.Global != nil && p.Overlaps(s.Global.Slice) {
		return errf(field, "%s overlaps this node's own slice %s; a collision of node slices would black-hole traffic (give the nodes distinct slice_cidr)", p, s.Global.Slice)
	}
	for _, name := range sortedKeys(s.Services) {
		if sub := s.Services[name].Subnet; p.Overlaps(sub) {
			return errf(field, "%s overlaps this node's subnet %s of service %s", p, sub, name)
		}
	}
	for other, op := range s.Peers[sc.Key()] {
		if other == key {
			continue
		}
		for _, q := range op.AllowedIPs {
			if q == p {
				return errf(field, "%s is already routed to peer %s in scope %s; remove it there first", p, other, sc)
			}
		}
	}
	return nil
}

func (s *State) checkPeerKey(field string, sc Scope, key string) error {
	if key == s.Node.PublicKey {
		return errf(field, "%s is this node's own public key", key)
	}
	for _, name := range sortedKeys(s.Services) {
		if d := s.Services[name].Dedicated; d != nil && d.PublicKey == key {
			return errf(field, "%s is this node's own key for service %s", key, name)
		}
	}
	if p := s.peer(sc, key); p != nil && p.Guest != "" {
		return errf(field, "%s belongs to guest %s; attach_container and detach_container manage it", key, p.Guest)
	}
	return nil
}

func (s *State) decideAddPeer(c AddPeer) (Decision, error) {
	if err := s.checkScope(c.Scope); err != nil {
		return Decision{}, err
	}
	key, err := ParseKey("public_key", c.PublicKey)
	if err != nil {
		return Decision{}, err
	}
	if err := s.checkPeerKey("public_key", c.Scope, key); err != nil {
		return Decision{}, err
	}
	ep, err := parseEndpoint("endpoint", c.Endpoint)
	if err != nil {
		return Decision{}, err
	}
	aips, err := ParseAllowedIPs("allowed_ips", c.AllowedIPs)
	if err != nil {
		return Decision{}, err
	}
	for _, p := range aips {
		if err := s.checkAllowedIP("allowed_ips", c.Scope, key, p); err != nil {
			return Decision{}, err
		}
	}
	if c.Keepalive > 65535 {
		return Decision{}, errf("persistent_keepalive_secs", "%d is more than 65535", c.Keepalive)
	}
	old := s.peer(c.Scope, key)
	if old == nil {
		return okWith(&PeerAdded{Scope: c.Scope, PublicKey: key, Endpoint: ep, AllowedIPs: aips, Keepalive: c.Keepalive})
	}
	// An existing peer is updated in place. AllowedIPs are merged, never
	// dropped: remove_allowed_ip and remove_peer are how routes go away.
	merged := SortPrefixes(append(append([]netip.Prefix(nil), old.AllowedIPs...), aips...))
	if ep == "" {
		ep = old.Endpoint
	}
	if ep == old.Endpoint && c.Keepalive == old.Keepalive && equalPrefixes(merged, old.AllowedIPs) {
		return okWith()
	}
	return okWith(&PeerUpdated{Scope: c.Scope, PublicKey: key, Endpoint: ep, AllowedIPs: merged, Keepalive: c.Keepalive})
}

func equalPrefixes(a, b []netip.Prefix) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (s *State) decideRemovePeer(c RemovePeer) (Decision, error) {
	key, err := ParseKey("pubkey", c.PublicKey)
	if err != nil {
		return Decision{}, err
	}
	p := s.peer(c.Scope, key)
	if p == nil {
		return okWith()
	}
	if p.Guest != "" {
		return Decision{}, errf("pubkey", "%s belongs to guest %s; detach_container removes it", key, p.Guest)
	}
	return okWith(&PeerRemoved{Scope: c.Scope, PublicKey: key})
}

// allowedIPTarget parses the pubkey and cidr of add_allowed_ip and
// remove_allowed_ip and finds the peer (nil when there is none). A guest's
// AllowedIPs belong to its attachment and are refused.
func (s *State) allowedIPTarget(sc Scope, pubkey, cidrText string) (string, netip.Prefix, *Peer, error) {
	key, err := ParseKey("pubkey", pubkey)
	if err != nil {
		return "", netip.Prefix{}, nil, err
	}
	cidr, err := parseAllowedIP("cidr", cidrText)
	if err != nil {
		return "", netip.Prefix{}, nil, err
	}
	p := s.peer(sc, key)
	if p != nil && p.Guest != "" {
		return "", netip.Prefix{}, nil, errf("pubkey", "%s belongs to guest %s; its AllowedIPs are managed by attach_container", key, p.Guest)
	}
	return key, cidr, p, nil
}

func (s *State) decideAddAllowedIP(c AddAllowedIP) (Decision, error) {
	key, cidr, p, err := s.allowedIPTarget(c.Scope, c.PublicKey, c.CIDR)
	if err != nil {
		return Decision{}, err
	}
	if p == nil {
		return Decision{}, errf("pubkey", "no peer %s in scope %s (add_peer first)", key, c.Scope)
	}
	if slices.Contains(p.AllowedIPs, cidr) {
		return okWith()
	}
	if err := s.checkAllowedIP("cidr", c.Scope, key, cidr); err != nil {
		return Decision{}, err
	}
	return okWith(&PeerAllowedIPAdded{Scope: c.Scope, PublicKey: key, CIDR: cidr})
}

func (s *State) decideRemoveAllowedIP(c RemoveAllowedIP) (Decision, error) {
	key, cidr, p, err := s.allowedIPTarget(c.Scope, c.PublicKey, c.CIDR)
	if err != nil || p == nil || !slices.Contains(p.AllowedIPs, cidr) {
		return Decision{Reply: ReplyOK{}}, err // absent: removing again is a no-op
	}
	return okWith(&PeerAllowedIPRemoved{Scope: c.Scope, PublicKey: key, CIDR: cidr})
}

func (s *State) decideObserve(c ObserveEndpoints) (Decision, error) {
	var evs []Event
	for _, o := range c.Observed {
		p := s.peer(o.Scope, o.PublicKey)
		if p == nil || o.Endpoint == "" || o.Endpoint == p.ObservedEndpoint {
			continue
		}
		if o.Endpoint == p.Endpoint && p.ObservedEndpoint == "" {
			continue // still where the orchestrator put it
		}
		ep, err := parseEndpoint("endpoint", o.Endpoint)
		if err != nil {
			continue
		}
		evs = append(evs, &PeerEndpointObserved{Scope: o.Scope, PublicKey: p.PublicKey, Endpoint: ep})
	}
	return okWith(evs...)
}
