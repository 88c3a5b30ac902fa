package hcn

import (
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/zlayer/overlayd/effects"
	"github.com/zlayer/overlayd/projections"
)

// Config holds the node-local choices of the HCN objects.
type Config struct {
	// UplinkAdapter, when set, is the host network adapter the node's
	// overlay network is bound to: the network is then Transparent with a
	// NetAdapterName policy naming it. Empty: an Internal network (a
	// host-only virtual switch; the host routes between it and the
	// mesh).
	UplinkAdapter string
}

// Objects are the HCN objects the state wants, each with the document
// that creates it, sorted by name (namespaces by GUID).
type Objects struct {
	Networks   []NetworkSpec
	Endpoints  []EndpointSpec
	Namespaces []NamespaceSpec
}

// NetworkSpec is a network the state wants.
type NetworkSpec struct {
	// Key is the change key the network serves: "global" (the overlay
	// network) or "service/<name>".
	Key string
	Doc Network
}

// EndpointSpec is an endpoint the state wants. Doc.HostComputeNetwork is
// left empty: it is the GUID HCN gave the network named Network, filled in
// when the endpoint is created.
type EndpointSpec struct {
	Attachment string // the handle key, e.g. windows_container:ctr-abc
	Leg        Leg
	Network    string // the name of its network
	Namespace  string // the GUID of the namespace it goes into
	Doc        Endpoint
}

// NamespaceSpec is a namespace the state wants; Doc.Id is its GUID.
type NamespaceSpec struct {
	Attachment string
	Doc        Namespace
}

// Desired computes the HCN objects st wants, named with owner's marks:
//
//   - the node's overlay network (with a global overlay): Internal, or
//     Transparent on cfg.UplinkAdapter, static IPAM on the node slice with
//     the gateway (the slice's first address, the node's) as the default
//     route;
//   - one network per service, shared or dedicated alike (on Linux every
//     service has a bridge of its own on its own subnet, and its
//     containers' addresses come from that subnet): Internal, static IPAM
//     on the service subnet with its gateway;
//   - per windows_container attachment a namespace (its journaled GUID)
//     and an endpoint on its service's network, and with join_global a
//     second endpoint on the overlay network (the Linux eth1).
//
// It reads st and keeps nothing of it.
func Desired(st *projections.State, cfg Config, owner effects.Owner) *Objects {
	m := newMarks(owner)
	out := &Objects{}
	if st.Global != nil {
		out.Networks = append(out.Networks, NetworkSpec{Key: "global", Doc: overlayNetwork(st.Global, cfg, m)})
	}
	for _, name := range slices.Sorted(maps.Keys(st.Services)) {
		out.Networks = append(out.Networks, NetworkSpec{Key: "service/" + name, Doc: serviceNetwork(st.Services[name], m)})
	}
	for _, key := range slices.Sorted(maps.Keys(st.Attachments)) {
		eps, ns, ok := attachmentObjects(st, st.Attachments[key], m)
		if !ok {
			continue
		}
		out.Endpoints = append(out.Endpoints, eps...)
		out.Namespaces = append(out.Namespaces, ns)
	}
	sort.Slice(out.Networks, func(i, j int) bool { return out.Networks[i].Doc.Name < out.Networks[j].Doc.Name })
	sort.Slice(out.Endpoints, func(i, j int) bool { return out.Endpoints[i].Doc.Name < out.Endpoints[j].Doc.Name })
	sort.Slice(out.Namespaces, func(i, j int) bool { return out.Namespaces[i].Doc.Id < out.Namespaces[j].Doc.Id })
	return out
}

// defaultRoute is the default destination of p's family.
func defaultRoute(a netip.Addr) string {
	if a.Is4() {
		return "0.0.0.0/0"
	}
	return "::/0"
}

func staticIpam(subnet netip.Prefix, gateway netip.Addr) []Ipam {
	return []Ipam{{Type: "Static", Subnets: []Subnet{{
		IpAddressPrefix: subnet.Masked().String(),
		Routes:          []Route{{NextHop: gateway.String(), DestinationPrefix: defaultRoute(gateway)}},
	}}}}
}

func overlayNetwork(g *projections.Global, cfg Config, m marks) Network {
	n := Network{Name: m.overlay(), Type: TypeInternal, Ipams: staticIpam(g.Slice, g.NodeIP), SchemaVersion: V2}
	if cfg.UplinkAdapter != "" {
		n.Type = TypeTransparent
		n.Policies = []NetworkPolicy{{Type: "NetAdapterName", Settings: mustJSON(NetAdapterNameSettings{NetworkAdapterName: cfg.UplinkAdapter})}}
	}
	return n
}

func serviceNetwork(sv *projections.Service, m marks) Network {
	return Network{Name: m.service(sv.Name), Type: TypeInternal, Ipams: staticIpam(sv.Subnet, sv.Gateway), SchemaVersion: V2}
}

// aclPriority is the priority of the ACLs allowing the cluster (HNS's
// user rules run from 100; the default rules are lower).
const aclPriority = 200

func clusterPolicies(g *projections.Global, nextHop netip.Addr, nat, route bool) []EndpointPolicy {
	cluster := g.ClusterCIDR.Masked().String()
	var ps []EndpointPolicy
	if nat {
		ps = append(ps, EndpointPolicy{Type: PolicyOutBoundNAT, Settings: mustJSON(OutboundNatSettings{Exceptions: []string{cluster}})})
	}
	if route {
		ps = append(ps, EndpointPolicy{Type: PolicySDNRoute, Settings: mustJSON(SDNRouteSettings{DestinationPrefix: cluster, NextHop: nextHop.String()})})
	}
	for _, dir := range []string{"In", "Out"} {
		ps = append(ps, EndpointPolicy{Type: PolicyACL, Settings: mustJSON(ACLSettings{Action: "Allow", Direction: dir,
			RemoteAddresses: cluster, RuleType: "Switch", Priority: aclPriority})})
	}
	return ps
}

// attachmentObjects are a windows_container attachment's endpoints and
// namespace; ok is false for other attachments, or when what it needs is
// gone (its service, the global overlay).
func attachmentObjects(st *projections.State, a *projections.Attachment, m marks) ([]EndpointSpec, NamespaceSpec, bool) {
	sv := st.Services[a.Service]
	g := st.Global
	if a.Handle.Platform != projections.PlatformWindows || a.NamespaceGUID == "" || sv == nil || g == nil {
		return nil, NamespaceSpec{}, false
	}
	key := a.Handle.Key()
	joined := a.GlobalIP.IsValid()
	svc := Endpoint{
		Name: m.endpoint(a.NamespaceGUID, LegService),
		// The cluster goes out of the global leg when there is one (as
		// Linux's eth1 route), else through the service's gateway.
		Policies:         clusterPolicies(g, sv.Gateway, g.NAT, !joined),
		IpConfigurations: []IpConfig{{IpAddress: a.IP.String(), PrefixLength: uint8(sv.Subnet.Bits())}},
		Routes:           []Route{{NextHop: sv.Gateway.String(), DestinationPrefix: defaultRoute(sv.Gateway)}},
		SchemaVersion:    V2,
	}
	if a.DNSServer.IsValid() {
		svc.Dns.ServerList = []string{a.DNSServer.String()}
	}
	if a.DNSDomain != "" {
		d := strings.TrimSuffix(a.DNSDomain, ".")
		svc.Dns.Domain, svc.Dns.Search = d, []string{d}
	}
	eps := []EndpointSpec{{Attachment: key, Leg: LegService, Network: m.service(sv.Name), Namespace: a.NamespaceGUID, Doc: svc}}
	if joined {
		glob := Endpoint{
			Name: m.endpoint(a.NamespaceGUID, LegGlobal),
			// No NAT and no default route: the leg carries the cluster
			// only, through the node (Linux's eth1).
			Policies:         clusterPolicies(g, g.NodeIP, false, true),
			IpConfigurations: []IpConfig{{IpAddress: a.GlobalIP.String(), PrefixLength: uint8(g.Slice.Bits())}},
			Routes:           []Route{{NextHop: g.NodeIP.String(), DestinationPrefix: g.ClusterCIDR.Masked().String()}},
			SchemaVersion:    V2,
		}
		eps = append(eps, EndpointSpec{Attachment: key, Leg: LegGlobal, Network: m.overlay(), Namespace: a.NamespaceGUID, Doc: glob})
	}
	ns := NamespaceSpec{Attachment: key, Doc: Namespace{Id: a.NamespaceGUID, Type: NamespaceHost, SchemaVersion: V2}}
	return eps, ns, true
}
