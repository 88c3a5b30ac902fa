package wireguard

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/zlayer/overlayd/effects"
)

// wgDevice is one running device and what was applied to it. The
// reconciler's mutex guards it.
type wgDevice struct {
	name    string
	k       Kernel
	dev     Device
	privPub string // public key of the configured private key
	port    uint16 // listen port set; 0 until setting it succeeded
	addr    netip.Prefix
	index   int // link index, set by ensureLink
	peers   map[string]*applied
	routes  map[netip.Prefix]bool
}

func newDevice(name string, k Kernel, dev Device) *wgDevice {
	return &wgDevice{name: name, k: k, dev: dev, peers: map[string]*applied{}, routes: map[netip.Prefix]bool{}}
}

func (d *wgDevice) close() { d.dev.Close() }

func (d *wgDevice) link() (Link, error) { return d.k.Link(d.name) }

// apply converges the whole device to cfg. It returns the keys of peers
// to handshake with now: the peers it added, and every peer with an
// endpoint once the listen port was (re)set. The link comes up (and the
// device with it) before any peer is configured: a handshake sent by a
// device that is still down is lost, and wireguard-go then waits 5 s
// before it tries again.
//
// A listen port that cannot be taken does not stop the pass: the device
// keeps its address, peers and routes (so it listens as soon as a later
// pass can set the port, without being made again), and the error is a
// *PortError.
func (d *wgDevice) apply(cfg *Config, priv wgtypes.Key) ([]string, error) {
	if err := d.ensureLink(cfg); err != nil {
		return nil, err
	}
	if err := d.dev.Up(); err != nil {
		return nil, fmt.Errorf("wireguard: %s: bring the device up: %w", d.name, err)
	}
	if d.privPub != cfg.PublicKey {
		if err := d.dev.IpcSet(fmt.Sprintf("private_key=%s\n", hexOf(priv))); err != nil {
			return nil, fmt.Errorf("wireguard: %s: set private key: %w", d.name, err)
		}
		d.privPub = cfg.PublicKey
	}
	var portErr error
	portSet := false
	if d.port != cfg.Port {
		if err := d.dev.IpcSet(fmt.Sprintf("listen_port=%d\n", cfg.Port)); err != nil {
			// wireguard-go closed the old socket before it tried the new
			// port: the device has none now.
			d.port = 0
			portErr = &PortError{Device: d.name, Port: cfg.Port, Err: err}
		} else {
			d.port, portSet = cfg.Port, true
		}
	}
	want := make(map[string]*Peer, len(cfg.Peers)+len(d.peers))
	for k := range d.peers {
		want[k] = nil // gone unless cfg has it
	}
	for i := range cfg.Peers {
		want[cfg.Peers[i].PublicKey] = &cfg.Peers[i]
	}
	added, err := d.applyPeers(want, cfg.OwnPrefix())
	if portSet {
		// A new socket: every peer with an endpoint handshakes at once
		// rather than at its next retry.
		added = added[:0]
		for _, p := range cfg.Peers {
			if p.Endpoint.IsValid() {
				added = append(added, p.PublicKey)
			}
		}
	}
	if err != nil {
		return added, errors.Join(portErr, err)
	}
	// Routes that no peer accounts for (left by an earlier incarnation, or
	// added by hand with our protocol) go.
	wantRoutes := map[netip.Prefix]bool{}
	for _, p := range cfg.Routes() {
		wantRoutes[p] = true
	}
	errs := []error{portErr}
	for p := range d.routes {
		if !wantRoutes[p] {
			errs = append(errs, d.delRoute(p))
		}
	}
	for p := range wantRoutes {
		if !d.routes[p] {
			errs = append(errs, d.addRoute(p))
		}
	}
	return added, errors.Join(errs...)
}

// applyPeers converges the named peers (nil: remove) and their routes, and
// leaves the others alone: one add_peer costs one peer's work, however many
// peers the device has. Peers are updated in place.
func (d *wgDevice) applyPeers(want map[string]*Peer, own netip.Prefix) ([]string, error) {
	var list []Peer
	var removed []string
	have := make(map[string]*applied, len(want))
	for k, p := range want {
		if old := d.peers[k]; old != nil {
			have[k] = old
		}
		if p != nil {
			list = append(list, *p)
		} else if d.peers[k] != nil {
			removed = append(removed, k)
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].PublicKey < list[j].PublicKey })
	text, added, err := peerDiff(have, list)
	if err != nil {
		return nil, fmt.Errorf("wireguard: %s: %w", d.name, err)
	}
	if text != "" {
		if err := d.dev.IpcSet(text); err != nil {
			// Part of it may be applied: the next full pass re-reads the
			// device.
			return nil, fmt.Errorf("wireguard: %s: configure peers: %w", d.name, err)
		}
	}
	// Routes: add the new prefixes first, then drop the old ones.
	var errs []error
	newApplied := appliedOf(list, have)
	for _, p := range list {
		for q := range newApplied[p.PublicKey].AllowedIPs {
			if q != own && !d.routes[q] {
				errs = append(errs, d.addRoute(q))
			}
		}
	}
	for k, old := range have {
		na := newApplied[k]
		for q := range old.AllowedIPs {
			if q != own && (na == nil || !na.AllowedIPs[q]) && d.routes[q] {
				errs = append(errs, d.delRoute(q))
			}
		}
	}
	for _, k := range removed {
		delete(d.peers, k)
	}
	for k, a := range newApplied {
		d.peers[k] = a
	}
	var withEndpoint []string
	for _, k := range added {
		if p := want[k]; p != nil && p.Endpoint.IsValid() {
			withEndpoint = append(withEndpoint, k)
		}
	}
	return withEndpoint, errors.Join(errs...)
}

func (d *wgDevice) linkRef() Link { return Link{Name: d.name, Index: d.index} }

func (d *wgDevice) addRoute(p netip.Prefix) error {
	if err := d.k.ReplaceRoute(d.linkRef(), p); err != nil {
		return fmt.Errorf("wireguard: %s: route %s: %w", d.name, p, err)
	}
	d.routes[p] = true
	return nil
}

func (d *wgDevice) delRoute(p netip.Prefix) error {
	if err := d.k.DelRoute(d.linkRef(), p); err != nil {
		return fmt.Errorf("wireguard: %s: remove route %s: %w", d.name, p, err)
	}
	delete(d.routes, p)
	return nil
}

func hexOf(k wgtypes.Key) string { return fmt.Sprintf("%x", k[:]) }

// ensureLink sets the address, MTU, no IPv6 link-local address, and up.
func (d *wgDevice) ensureLink(cfg *Config) error {
	l, err := d.link()
	if err != nil {
		return err
	}
	d.index = l.Index
	if l.MTU != effects.MTU {
		if err := d.k.SetMTU(l, effects.MTU); err != nil {
			return fmt.Errorf("wireguard: %s: set MTU: %w", d.name, err)
		}
	}
	// No link-local address: router solicitations and MLD would only be
	// dropped by cryptokey routing. Absent IPv6 is fine.
	_ = d.k.DisableAddrGen(l)
	if d.addr != cfg.Address {
		addrs, err := d.k.Addrs(l)
		if err != nil {
			return fmt.Errorf("wireguard: %s: list addresses: %w", d.name, err)
		}
		if err := d.k.ReplaceAddr(l, cfg.Address); err != nil {
			return fmt.Errorf("wireguard: %s: address %s: %w", d.name, cfg.Address, err)
		}
		for _, p := range addrs {
			if p != cfg.Address && !p.Addr().IsLinkLocalUnicast() {
				_ = d.k.DelAddr(l, p)
			}
		}
		d.addr = cfg.Address
	}
	if !l.Up {
		if err := d.k.SetUp(l); err != nil {
			return fmt.Errorf("wireguard: %s: set up: %w", d.name, err)
		}
	}
	return nil
}

// refresh re-reads what the kernel and the device hold, so that the next
// apply repairs any change made behind the daemon's back.
func (d *wgDevice) refresh() error {
	st, err := d.stats()
	if err != nil {
		return err
	}
	l, err := d.link()
	if err != nil {
		return err
	}
	routes, err := d.k.Routes(l)
	if err != nil {
		return fmt.Errorf("wireguard: %s: list routes: %w", d.name, err)
	}
	fresh := appliedFrom(st)
	for k, a := range fresh {
		if old := d.peers[k]; old != nil {
			a.Endpoint = old.Endpoint // the device may have roamed: not drift
		}
	}
	d.peers = fresh
	if st.ListenPort != d.port {
		d.port = 0 // forces the port to be set again
	}
	d.routes = map[netip.Prefix]bool{}
	for _, p := range routes {
		d.routes[p] = true
	}
	d.addr = netip.Prefix{} // re-check the address
	return nil
}

// appliedKeys is what the device was last made to hold: its peers' keys
// and its routes.
type appliedKeys struct {
	peers  map[string]bool
	routes map[netip.Prefix]bool
}

func (d *wgDevice) appliedKeys() appliedKeys {
	a := appliedKeys{peers: make(map[string]bool, len(d.peers)), routes: make(map[netip.Prefix]bool, len(d.routes))}
	for k := range d.peers {
		a.peers[k] = true
	}
	for p := range d.routes {
		a.routes[p] = true
	}
	return a
}

// driftCount is how many peers and routes a refresh found different from
// what was applied: missing, or there without the daemon having put them.
type driftCount struct{ peers, routes int }

// driftSince compares what refresh read with before (appliedKeys).
func (d *wgDevice) driftSince(before appliedKeys) driftCount {
	var n driftCount
	for k := range before.peers {
		if d.peers[k] == nil {
			n.peers++
		}
	}
	for k := range d.peers {
		if !before.peers[k] {
			n.peers++
		}
	}
	for p := range before.routes {
		if !d.routes[p] {
			n.routes++
		}
	}
	for p := range d.routes {
		if !before.routes[p] {
			n.routes++
		}
	}
	return n
}

func (d *wgDevice) stats() (*DeviceStats, error) {
	text, err := d.dev.IpcGet()
	if err != nil {
		return nil, fmt.Errorf("wireguard: %s: read the device: %w", d.name, err)
	}
	ds, err := parseGet(text)
	if err != nil {
		return nil, fmt.Errorf("wireguard: %s: %w", d.name, err)
	}
	return ds, nil
}

// handshake makes the device initiate a handshake with the peer now
// (wireguard-go sends at most one initiation per 5 s per peer).
func (d *wgDevice) handshake(pub string) {
	k, err := wgtypes.ParseKey(pub)
	if err != nil {
		return
	}
	d.dev.Handshake(k)
}
