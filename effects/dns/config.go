package dns

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/zlayer/overlayd/projections"
)

// Port is where the server listens on the node's overlay addresses.
const Port = 53

// TTL of every answer, and the negative-caching TTL of the SOA.
const TTL = 5

// Config is what the server needs besides the records: which zones it
// owns, who may ask, and where it listens. Desired derives it from the
// projected state; it is small and rebuilt on every relevant change.
type Config struct {
	// Zones are the overlay zones, lower case, absolute ("lab.local."),
	// the first one primary: it qualifies single-label names in PTR
	// answers.
	Zones []string
	// Clients are the prefixes whose clients get answers (loopback always
	// does): the node's slice and the local service subnets.
	Clients []netip.Prefix
	// Reverse are the overlay prefixes whose reverse names the server owns:
	// an address in them without a name is NXDOMAIN, not forwarded.
	Reverse []netip.Prefix
	// Listen are the overlay addresses to serve on (port Port): the node's
	// address and every service gateway (as podman's aardvark-dns does, so
	// a container can use its default gateway as its resolver), which
	// covers every node-local dns_server an attachment can be told.
	Listen []netip.AddrPort
	// Serial is the SOA serial (the state's sequence number, truncated).
	Serial uint32
}

// Desired derives the server's config from the state.
func Desired(st *projections.State) Config {
	var c Config
	zones := map[string]bool{}
	local := map[netip.Addr]bool{}
	if g := st.Global; g != nil {
		zones[Fqdn(g.Deployment+".local")] = true
		c.Clients = append(c.Clients, g.Slice, netip.PrefixFrom(g.NodeIP, g.NodeIP.BitLen()))
		c.Reverse = append(c.Reverse, g.ClusterCIDR, g.Slice)
		local[g.NodeIP] = true
	}
	for _, sv := range st.Services {
		c.Clients = append(c.Clients, sv.Subnet)
		c.Reverse = append(c.Reverse, sv.Subnet)
		local[sv.Gateway] = true
	}
	var primary string
	listen := map[netip.AddrPort]bool{}
	for a := range local {
		listen[netip.AddrPortFrom(a, Port)] = true
	}
	domains := map[string]bool{}
	for _, a := range st.Attachments {
		if a.DNSDomain != "" {
			domains[a.DNSDomain] = true
		}
	}
	for d := range domains {
		z := Fqdn(d)
		zones[z] = true
		if primary == "" || z < primary {
			primary = z
		}
	}
	for z := range zones {
		c.Zones = append(c.Zones, z)
	}
	// The orchestrator's domain, when it gave one, is primary; else the
	// deployment's.
	slices.SortFunc(c.Zones, func(a, b string) int {
		switch {
		case a == primary:
			return -1
		case b == primary:
			return 1
		}
		return strings.Compare(a, b)
	})
	for ap := range listen {
		c.Listen = append(c.Listen, ap)
	}
	slices.SortFunc(c.Listen, func(a, b netip.AddrPort) int { return a.Compare(b) })
	c.Clients = projections.SortPrefixes(c.Clients)
	c.Reverse = projections.SortPrefixes(c.Reverse)
	c.Serial = uint32(st.Seq)
	return c
}

// Fqdn returns name lower-cased and absolute (with the trailing dot).
func Fqdn(name string) string {
	name = strings.ToLower(name)
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	return name
}

// Relevant reports whether a change key concerns the server's config: the
// global overlay (zone, node address), services (client subnets) and
// attachments (dns_domain, dns_server). Records ("dns/" keys) are not
// reconciled: the daemon hands their events to Observe.
func Relevant(key string) bool {
	return key == "global" || strings.HasPrefix(key, "service/") || strings.HasPrefix(key, "attachment/")
}
