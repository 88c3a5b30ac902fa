package hcn

import (
	"encoding/json"
	"slices"
)

// What HCN reports back is richer than what was sent (defaults, status,
// its own policies): an object matches its document when every field the
// document sets is there with the same value. Policies are compared by
// type and by the settings fields this daemon declares (settings decoded
// into its types and encoded again), so a field HCN adds does not count
// as drift.

func networkMatches(have *Network, want *Network) bool {
	if have.Type != want.Type || len(have.Ipams) != len(want.Ipams) {
		return false
	}
	for i := range want.Ipams {
		h, w := have.Ipams[i], want.Ipams[i]
		if h.Type != "" && h.Type != w.Type || len(h.Subnets) != len(w.Subnets) {
			return false
		}
		for j := range w.Subnets {
			if h.Subnets[j].IpAddressPrefix != w.Subnets[j].IpAddressPrefix || !routesMatch(h.Subnets[j].Routes, w.Subnets[j].Routes) {
				return false
			}
		}
	}
	return slices.Equal(netPolicyKeys(have.Policies, true), netPolicyKeys(want.Policies, false))
}

// netPolicyKeys are the NetAdapterName policies (the only network policy
// this daemon sets) in a comparable form.
func netPolicyKeys(ps []NetworkPolicy, _ bool) []string {
	var out []string
	for _, p := range ps {
		if p.Type != "NetAdapterName" {
			continue
		}
		var s NetAdapterNameSettings
		_ = json.Unmarshal(p.Settings, &s)
		out = append(out, s.NetworkAdapterName)
	}
	slices.Sort(out)
	return out
}

func routesMatch(have, want []Route) bool {
	for _, w := range want {
		if !slices.ContainsFunc(have, func(h Route) bool {
			return h.NextHop == w.NextHop && h.DestinationPrefix == w.DestinationPrefix
		}) {
			return false
		}
	}
	return len(have) == len(want)
}

// endpointMatches: on the network networkID, the addresses, routes, DNS
// and policies of want.
func endpointMatches(have *Endpoint, want *Endpoint, networkID string) bool {
	if !sameID(have.HostComputeNetwork, networkID) || len(have.IpConfigurations) != len(want.IpConfigurations) {
		return false
	}
	for i, w := range want.IpConfigurations {
		h := have.IpConfigurations[i]
		if h.IpAddress != w.IpAddress || h.PrefixLength != w.PrefixLength {
			return false
		}
	}
	if !routesMatch(have.Routes, want.Routes) {
		return false
	}
	if have.Dns.Domain != want.Dns.Domain || !slices.Equal(have.Dns.ServerList, want.Dns.ServerList) || !slices.Equal(have.Dns.Search, want.Dns.Search) {
		return false
	}
	return slices.Equal(epPolicyKeys(have.Policies), epPolicyKeys(want.Policies))
}

// epPolicyKeys are an endpoint's policies of the types this daemon sets,
// each as its type and normalised settings, sorted.
func epPolicyKeys(ps []EndpointPolicy) []string {
	var out []string
	for _, p := range ps {
		var v any
		switch p.Type {
		case PolicyOutBoundNAT:
			v = &OutboundNatSettings{}
		case PolicySDNRoute:
			v = &SDNRouteSettings{}
		case PolicyACL:
			v = &ACLSettings{}
		default:
			continue
		}
		if json.Unmarshal(p.Settings, v) != nil {
			out = append(out, p.Type+" (unreadable)")
			continue
		}
		out = append(out, p.Type+" "+string(mustJSON(v)))
	}
	slices.Sort(out)
	return out
}

// sameID compares GUIDs whatever their case and braces.
func sameID(a, b string) bool { return canonID(a) == canonID(b) }
