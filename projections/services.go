package projections

import (
	"net/netip"
)

// Service modes as the wire carries them.
const (
	ModeAuto      = "auto"
	ModeShared    = "shared"
	ModeDedicated = "dedicated"
)

// Service is one service overlay on this node: a bridge with the gateway of
// the service subnet, and in dedicated mode a WireGuard device of its own.
type Service struct {
	Name    string       `json:"name"`
	Mode    string       `json:"mode"` // shared or dedicated (auto resolves to shared)
	Subnet  netip.Prefix `json:"subnet"`
	Gateway netip.Addr   `json:"gateway"`
	Bridge  string       `json:"bridge"`
	// Dedicated is set in dedicated mode.
	Dedicated *Dedicated `json:"dedicated,omitempty"`
}

// Dedicated is the identity of a dedicated service device. Its private key
// lives in the daemon's key store, named by the public key.
type Dedicated struct {
	Device    string `json:"device"`
	PublicKey string `json:"public_key"`
	Port      uint16 `json:"port"`
}

type (
	ServiceSetUp struct {
		Service   string       `json:"service"`
		Mode      string       `json:"mode"`
		Subnet    netip.Prefix `json:"subnet"`
		Gateway   netip.Addr   `json:"gateway"`
		Bridge    string       `json:"bridge"`
		Dedicated *Dedicated   `json:"dedicated,omitempty"`
	}
	ServiceTornDown struct {
		Service string `json:"service"`
	}
)

func (*ServiceSetUp) EventType() string       { return "service_set_up" }
func (*ServiceSetUp) EventVersion() uint16    { return 1 }
func (*ServiceTornDown) EventType() string    { return "service_torn_down" }
func (*ServiceTornDown) EventVersion() uint16 { return 1 }

func (s *State) applyServiceSetUp(e *ServiceSetUp) error {
	if _, dup := s.Services[e.Service]; dup {
		return corrupt("service_set_up for existing service %s", e.Service)
	}
	sv := &Service{Name: e.Service, Mode: e.Mode, Subnet: e.Subnet, Gateway: e.Gateway, Bridge: e.Bridge}
	if e.Dedicated != nil {
		d := *e.Dedicated
		sv.Dedicated = &d
	}
	s.Services[e.Service] = sv
	return s.take(e.Gateway, Owner{Kind: OwnerGateway, Pool: servicePool(e.Service)})
}

func (s *State) applyServiceTornDown(e *ServiceTornDown) error {
	sv, ok := s.Services[e.Service]
	if !ok {
		return corrupt("service_torn_down for unknown service %s", e.Service)
	}
	pool := servicePool(e.Service)
	for a, o := range s.IPAM.Owners {
		if o.Pool == pool && o.Kind != OwnerGateway {
			return corrupt("service_torn_down %s while %s is %s", e.Service, a, describeOwner(o))
		}
	}
	if len(s.Peers[Scope{Service: e.Service}.Key()]) > 0 {
		return corrupt("service_torn_down %s while it has peers", e.Service)
	}
	delete(s.Peers, Scope{Service: e.Service}.Key())
	delete(s.IPAM.Owners, sv.Gateway)
	delete(s.IPAM.Cursors, pool)
	delete(s.Services, e.Service)
	return nil
}

// serviceReply is the answer to setup_service_overlay for an existing service.
func serviceReply(sv *Service) ReplyServiceOverlay {
	r := ReplyServiceOverlay{Name: sv.Bridge, Mode: sv.Mode, OverlayIP: sv.Gateway, Subnet: sv.Subnet}
	if sv.Dedicated != nil {
		r.PublicKey = sv.Dedicated.PublicKey
		r.Port = sv.Dedicated.Port
	}
	return r
}

func resolveMode(m string) (string, error) {
	switch m {
	case ModeAuto, ModeShared:
		return ModeShared, nil
	case ModeDedicated:
		return ModeDedicated, nil
	}
	return "", errf("mode", "%q is not one of auto, shared, dedicated", m)
}

func (s *State) decideSetupService(cfg Config, c SetupService) (Decision, error) {
	if err := ValidateLabel("service", c.Service); err != nil {
		return Decision{}, err
	}
	mode, err := resolveMode(c.Mode)
	if err != nil {
		return Decision{}, err
	}
	if sv, ok := s.Services[c.Service]; ok {
		if sv.Mode != mode {
			return Decision{}, errf("mode", "service %s is set up as %s, not %s; teardown_service_overlay first", c.Service, sv.Mode, mode)
		}
		return Decision{Reply: serviceReply(sv)}, nil
	}
	g := s.Global
	if g == nil {
		return Decision{}, errf("service", "cannot set up %s: the global overlay is not set up (setup_global_overlay first)", c.Service)
	}
	bits := cfg.ServicePrefix4
	if g.ClusterCIDR.Addr().Is6() {
		bits = cfg.ServicePrefix6
	}
	if bits <= g.ClusterCIDR.Bits() {
		return Decision{}, errf("service", "cluster_cidr %s is too small for /%d service subnets", g.ClusterCIDR, bits)
	}
	// Skip the slice, the other services' subnets and every prefix a peer
	// routes: a subnet that collides with any of them would black-hole.
	used := append(s.localSubnets(), s.peerPrefixes()...)
	subnet, found := probeSlot(g.ClusterCIDR, bits, ServiceSubnetHash(c.Service, s.NodeKey()),
		func(p netip.Prefix) bool { return !overlapsAny(p, used) })
	if !found {
		return Decision{}, errf("service", "no free /%d subnet left in cluster_cidr %s for %s", bits, g.ClusterCIDR, c.Service)
	}
	ev := &ServiceSetUp{
		Service: c.Service,
		Mode:    mode,
		Subnet:  subnet,
		Gateway: firstHost(subnet),
		Bridge:  InterfaceName([]string{g.Deployment, g.InstanceID, c.Service}, SuffixBridge),
	}
	if mode == ModeDedicated {
		key, err := ParseKey("mode", c.NewPublicKey)
		if err != nil {
			return Decision{}, errf("mode", "dedicated: no key was generated for the device: %v", err)
		}
		port, err := s.freeDedicatedPort(cfg)
		if err != nil {
			return Decision{}, err
		}
		ev.Dedicated = &Dedicated{
			Device:    InterfaceName([]string{g.Deployment, g.InstanceID, c.Service}, SuffixDedicated),
			PublicKey: key,
			Port:      port,
		}
	}
	sv := &Service{Name: ev.Service, Mode: ev.Mode, Subnet: ev.Subnet, Gateway: ev.Gateway, Bridge: ev.Bridge, Dedicated: ev.Dedicated}
	return Decision{Events: []Event{ev}, Reply: serviceReply(sv)}, nil
}

// freeDedicatedPort is the lowest port of the dedicated band that no
// dedicated device and not the global device uses.
func (s *State) freeDedicatedPort(cfg Config) (uint16, error) {
	used := map[uint16]bool{}
	if s.Global != nil {
		used[s.Global.Port] = true
	}
	for _, sv := range s.Services {
		if sv.Dedicated != nil {
			used[sv.Dedicated.Port] = true
		}
	}
	for p := int(cfg.DedicatedPortMin); p <= int(cfg.DedicatedPortMax); p++ {
		if !used[uint16(p)] {
			return uint16(p), nil
		}
	}
	return 0, errf("mode", "the dedicated port band %d-%d is exhausted", cfg.DedicatedPortMin, cfg.DedicatedPortMax)
}

// decideTeardownService detaches the service's attachments, releases its
// reservations, removes its dedicated peers, then removes the service.
func (s *State) decideTeardownService(c TeardownService) (Decision, error) {
	if err := ValidateLabel("service", c.Service); err != nil {
		return Decision{}, err
	}
	if _, ok := s.Services[c.Service]; !ok {
		return okWith()
	}
	var evs []Event
	reason := "service " + c.Service + " torn down"
	for _, k := range sortedKeys(s.Attachments) {
		a := s.Attachments[k]
		if a.Service != c.Service {
			continue
		}
		if a.Handle.Platform == PlatformGuest {
			evs = append(evs, &GuestDetached{ID: a.Handle.ID, PublicKey: a.PublicKey, Reason: reason})
		} else {
			evs = append(evs, &ContainerDetached{Handle: a.Handle, Reason: reason})
		}
	}
	for _, a := range s.addrsOf(servicePool(c.Service), OwnerReservation) {
		evs = append(evs, &IPReleased{IP: a})
	}
	scope := Scope{Service: c.Service}
	for _, k := range sortedKeys(s.Peers[scope.Key()]) {
		evs = append(evs, &PeerRemoved{Scope: scope, PublicKey: k})
	}
	evs = append(evs, &ServiceTornDown{Service: c.Service})
	return okWith(evs...)
}
