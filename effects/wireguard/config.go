package wireguard

import (
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/zlayer/overlayd/projections"
)

// Config is the desired state of one device.
type Config struct {
	Name      string
	Scope     projections.Scope
	PublicKey string // base64; the private key comes from Keys
	Port      uint16
	// Address is the device's address with the prefix that is on-link
	// through it: node_ip/<cluster prefix> for the global device,
	// gateway/32 (or /128) for a dedicated device.
	Address netip.Prefix
	Peers   []Peer
}

// Peer is the desired state of one peer.
type Peer struct {
	PublicKey  string         // base64
	Endpoint   netip.AddrPort // invalid: none (the peer roams to us)
	AllowedIPs []netip.Prefix // sorted
	Keepalive  uint16
}

// Routes returns the prefixes to route through the device: every
// AllowedIP except the device's own on-link prefix (the kernel routes that
// one already).
func (c *Config) Routes() []netip.Prefix {
	own := c.Address.Masked()
	var out []netip.Prefix
	for _, p := range c.Peers {
		for _, a := range p.AllowedIPs {
			if a != own {
				out = append(out, a)
			}
		}
	}
	return projections.SortPrefixes(out)
}

// OwnPrefix is the prefix the kernel already routes through the device
// (its address's on-link prefix); AllowedIPs equal to it get no route.
func (c *Config) OwnPrefix() netip.Prefix { return c.Address.Masked() }

// Desired derives every device's configuration from the state.
func Desired(st *projections.State) []Config {
	var out []Config
	if g := st.Global; g != nil {
		out = append(out, Config{
			Name:      g.Device,
			Scope:     projections.Scope{},
			PublicKey: st.Node.PublicKey,
			Port:      g.Port,
			Address:   netip.PrefixFrom(g.NodeIP, g.ClusterCIDR.Bits()),
			Peers:     peersOf(st, projections.Scope{}),
		})
	}
	for _, n := range slices.Sorted(maps.Keys(st.Services)) {
		sv := st.Services[n]
		if sv.Dedicated == nil {
			continue
		}
		sc := projections.Scope{Service: n}
		out = append(out, Config{
			Name:      sv.Dedicated.Device,
			Scope:     sc,
			PublicKey: sv.Dedicated.PublicKey,
			Port:      sv.Dedicated.Port,
			Address:   netip.PrefixFrom(sv.Gateway, sv.Gateway.BitLen()),
			Peers:     peersOf(st, sc),
		})
	}
	return out
}

func peersOf(st *projections.State, sc projections.Scope) []Peer {
	var out []Peer
	for _, p := range st.PeersOf(sc) {
		out = append(out, peerOf(p))
	}
	return out
}

func peerOf(p *projections.Peer) Peer {
	ep := p.Endpoint
	if p.ObservedEndpoint != "" {
		ep = p.ObservedEndpoint // where the peer roamed to: survives restarts
	}
	ap, _ := netip.ParseAddrPort(ep)
	return Peer{PublicKey: p.PublicKey, Endpoint: ap, AllowedIPs: append([]netip.Prefix(nil), p.AllowedIPs...), Keepalive: uint16(p.Keepalive)}
}

// PeerChange is the desired state of one peer of one device after a change:
// Peer is nil when the peer is gone.
type PeerChange struct {
	Device    string
	Scope     projections.Scope // of the device
	PublicKey string
	Peer      *Peer
}

// Incremental returns the peer changes named by keys, when every key is a
// peer key ("peer/<scope>/<public key>") of a device that exists; ok is
// false when a full pass is needed (a device, the node or a service
// changed).
func Incremental(st *projections.State, keys []string) (changes []PeerChange, ok bool) {
	type device struct {
		name  string
		scope projections.Scope
	}
	devices := map[string]device{} // scope key -> device
	if g := st.Global; g != nil {
		devices[projections.Scope{}.Key()] = device{g.Device, projections.Scope{}}
	}
	for n, sv := range st.Services {
		if sv.Dedicated != nil {
			sc := projections.Scope{Service: n}
			devices[sc.Key()] = device{sv.Dedicated.Device, sc}
		}
	}
	for _, k := range keys {
		if !Relevant(k) {
			continue
		}
		rest, isPeer := strings.CutPrefix(k, "peer/")
		if !isPeer {
			return nil, false
		}
		// The public key is base64 (no '/'... but it may contain '/'): the
		// scope is "global" or "service:<name>" and has no '/'.
		scope, pub, found := strings.Cut(rest, "/")
		if !found {
			return nil, false
		}
		dev, exists := devices[scope]
		if !exists {
			return nil, false
		}
		ch := PeerChange{Device: dev.name, Scope: dev.scope, PublicKey: pub}
		if p := st.Peers[scope][pub]; p != nil {
			pp := peerOf(p)
			ch.Peer = &pp
		}
		changes = append(changes, ch)
	}
	return changes, true
}

// Relevant reports whether a change key can affect a device.
func Relevant(key string) bool {
	for _, p := range []string{"global", "node", "service/", "peer/"} {
		if len(key) >= len(p) && key[:len(p)] == p {
			return true
		}
	}
	return false
}
