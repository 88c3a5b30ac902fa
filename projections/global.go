package projections

import (
	"net/netip"
)

// Global is the node's part of the cluster-wide overlay.
type Global struct {
	Deployment  string       `json:"deployment"`
	InstanceID  string       `json:"instance_id"`
	ClusterCIDR netip.Prefix `json:"cluster_cidr"`
	// Slice is this node's share of the cluster: its own address and the
	// addresses of global attachments, guests and reservations.
	Slice        netip.Prefix `json:"slice_cidr"`
	SliceDerived bool         `json:"slice_derived"`
	Port         uint16       `json:"wg_port"`
	NAT          bool         `json:"nat_enabled"`
	// Device is the global WireGuard interface name, derived once and frozen.
	Device string     `json:"device"`
	NodeIP netip.Addr `json:"node_ip"`
}

type (
	GlobalOverlaySetUp struct{ Global }
	GlobalNATChanged   struct {
		NATEnabled bool `json:"nat_enabled"`
	}
	GlobalOverlayTornDown struct{}
)

func (*GlobalOverlaySetUp) EventType() string       { return "global_overlay_set_up" }
func (*GlobalOverlaySetUp) EventVersion() uint16    { return 1 }
func (*GlobalNATChanged) EventType() string         { return "global_nat_changed" }
func (*GlobalNATChanged) EventVersion() uint16      { return 1 }
func (*GlobalOverlayTornDown) EventType() string    { return "global_overlay_torn_down" }
func (*GlobalOverlayTornDown) EventVersion() uint16 { return 1 }

func (s *State) applyGlobalSetUp(e *GlobalOverlaySetUp) error {
	if s.Global != nil {
		return corrupt("global_overlay_set_up while one is active")
	}
	g := e.Global
	s.Global = &g
	return s.take(g.NodeIP, Owner{Kind: OwnerNode, Pool: poolSlice})
}

func (s *State) applyGlobalTornDown() error {
	if s.Global == nil {
		return corrupt("global_overlay_torn_down without a global overlay")
	}
	for a, o := range s.IPAM.Owners {
		if o.Pool == poolSlice && o.Kind != OwnerNode {
			return corrupt("global_overlay_torn_down while %s is still %s", a, describeOwner(o))
		}
	}
	delete(s.IPAM.Owners, s.Global.NodeIP)
	delete(s.IPAM.Cursors, poolSlice)
	s.Global = nil
	return nil
}

func (s *State) decideSetupGlobal(cfg Config, c SetupGlobal) (Decision, error) {
	if err := validateText("deployment", c.Deployment, true); err != nil {
		return Decision{}, err
	}
	if err := validateText("instance_id", c.InstanceID, false); err != nil {
		return Decision{}, err
	}
	cluster, err := parseNetwork("cluster_cidr", c.ClusterCIDR)
	if err != nil {
		return Decision{}, err
	}
	var slice netip.Prefix
	if c.SliceCIDR != "" {
		if slice, err = parseNetwork("slice_cidr", c.SliceCIDR); err != nil {
			return Decision{}, err
		}
		if slice.Addr().BitLen() != cluster.Addr().BitLen() || slice.Bits() < cluster.Bits() || !cluster.Contains(slice.Addr()) {
			return Decision{}, errf("slice_cidr", "%s is not inside cluster_cidr %s", slice, cluster)
		}
	}
	if c.Port == 0 {
		return Decision{}, errf("wg_port", "must not be 0")
	}
	for _, name := range sortedKeys(s.Services) {
		if d := s.Services[name].Dedicated; d != nil && d.Port == c.Port {
			return Decision{}, errf("wg_port", "%d is the port of service %s's dedicated device", c.Port, name)
		}
	}

	if g := s.Global; g != nil {
		switch {
		case c.Deployment != g.Deployment:
			return Decision{}, errf("deployment", "%q differs from the active overlay's %q; teardown_global_overlay first", c.Deployment, g.Deployment)
		case cluster != g.ClusterCIDR:
			return Decision{}, errf("cluster_cidr", "%s differs from the active overlay's %s; teardown_global_overlay first", cluster, g.ClusterCIDR)
		case slice.IsValid() && slice != g.Slice:
			return Decision{}, errf("slice_cidr", "%s differs from the active overlay's %s; teardown_global_overlay first", slice, g.Slice)
		case c.Port != g.Port:
			return Decision{}, errf("wg_port", "%d differs from the active overlay's %d; teardown_global_overlay first", c.Port, g.Port)
		}
		// instance_id is ignored on purpose: the reference orchestrator sends
		// its own PID there, and names are frozen once chosen.
		d := Decision{Reply: ReplyBridgeName{Name: g.Device}}
		if c.NATEnabled != g.NAT {
			d.Events = append(d.Events, &GlobalNATChanged{NATEnabled: c.NATEnabled})
		}
		return d, nil
	}

	// Services that outlived an earlier global overlay keep their subnets:
	// the new cluster must hold them and the slice must avoid them.
	for _, name := range sortedKeys(s.Services) {
		sub := s.Services[name].Subnet
		if !cluster.Contains(sub.Addr()) || sub.Bits() < cluster.Bits() {
			return Decision{}, errf("cluster_cidr", "%s does not contain service %s's subnet %s; teardown_service_overlay %s first", cluster, name, sub, name)
		}
		if slice.IsValid() && slice.Overlaps(sub) {
			return Decision{}, errf("slice_cidr", "%s overlaps service %s's subnet %s", slice, name, sub)
		}
	}
	// Peers may have been added before the overlay: the slice must not
	// take a prefix that one of them routes.
	if slice.IsValid() {
		for _, sc := range sortedKeys(s.Peers) {
			for _, k := range sortedKeys(s.Peers[sc]) {
				for _, p := range s.Peers[sc][k].AllowedIPs {
					if p.Overlaps(slice) {
						return Decision{}, errf("slice_cidr", "%s overlaps %s, which peer %s routes", slice, p, k)
					}
				}
			}
		}
	}
	derived := false
	if !slice.IsValid() {
		bits := cfg.SlicePrefix4
		if cluster.Addr().Is6() {
			bits = cfg.SlicePrefix6
		}
		if bits <= cluster.Bits() {
			return Decision{}, errf("slice_cidr", "not given, and cluster_cidr %s is too small to derive a /%d node slice: pass slice_cidr or start the daemon with a longer --slice-prefix", cluster, bits)
		}
		key := s.NodeKey()
		if key == "" {
			return Decision{}, errf("slice_cidr", "not given, and this node has neither a node id nor a public key to derive one from")
		}
		used := s.localSubnets()
		used = append(used, s.peerPrefixes()...)
		p, found := probeSlot(cluster, bits, SliceHash(key), func(p netip.Prefix) bool { return !overlapsAny(p, used) })
		if !found {
			return Decision{}, errf("slice_cidr", "not given, and no /%d slot of cluster_cidr %s is free of this node's subnets", bits, cluster)
		}
		slice, derived = p, true
	}
	g := Global{
		Deployment:   c.Deployment,
		InstanceID:   c.InstanceID,
		ClusterCIDR:  cluster,
		Slice:        slice,
		SliceDerived: derived,
		Port:         c.Port,
		NAT:          c.NATEnabled,
		Device:       InterfaceName([]string{c.Deployment, c.InstanceID}, SuffixGlobal),
		NodeIP:       firstHost(slice),
	}
	return Decision{Events: []Event{&GlobalOverlaySetUp{Global: g}}, Reply: ReplyBridgeName{Name: g.Device}}, nil
}

// decideTeardownGlobal removes the global overlay and everything that lives
// in the node slice: the global leg of attachments, guests and reservations,
// then the node address and the slice itself. Services and their bridges
// stay (they have their own teardown), and so do the global peers: they are
// the cluster's membership, which the next setup_global_overlay puts back on
// the device at once (the reference orchestrator tears down on every
// graceful stop and sets up again on start).
func (s *State) decideTeardownGlobal() (Decision, error) {
	if s.Global == nil {
		return okWith()
	}
	var evs []Event
	for _, k := range sortedKeys(s.Attachments) {
		a := s.Attachments[k]
		switch {
		case a.Handle.Platform == PlatformGuest:
			evs = append(evs, &GuestDetached{ID: a.Handle.ID, PublicKey: a.PublicKey, Reason: "global overlay torn down"})
		case a.GlobalIP.IsValid():
			evs = append(evs, &AttachmentGlobalLeft{Handle: a.Handle, Reason: "global overlay torn down"})
		}
	}
	for _, a := range s.addrsOf(poolSlice, OwnerReservation) {
		evs = append(evs, &IPReleased{IP: a})
	}
	evs = append(evs, &GlobalOverlayTornDown{})
	return okWith(evs...)
}

// localSubnets are the prefixes this node owns: its slice and service subnets.
func (s *State) localSubnets() []netip.Prefix {
	var out []netip.Prefix
	if s.Global != nil {
		out = append(out, s.Global.Slice)
	}
	for _, name := range sortedKeys(s.Services) {
		out = append(out, s.Services[name].Subnet)
	}
	return out
}

// peerPrefixes are all AllowedIPs of all peers, in every scope.
func (s *State) peerPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, m := range s.Peers {
		for _, p := range m {
			if p.Guest == "" {
				out = append(out, p.AllowedIPs...)
			}
		}
	}
	return out
}

func overlapsAny(p netip.Prefix, set []netip.Prefix) bool {
	for _, q := range set {
		if p.Overlaps(q) {
			return true
		}
	}
	return false
}
