package wireguard

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/zlayer/overlayd/effects"
	"github.com/zlayer/overlayd/effects/internal/netconv"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// wgDevice is one running wireguard-go device and what was applied to it.
type wgDevice struct {
	name    string
	log     *slog.Logger
	tun     tun.Device
	dev     *device.Device
	uapi    net.Listener
	privPub string // public key of the configured private key
	port    uint16
	addr    netip.Prefix
	index   int // link index, set by ensureLink
	peers   map[string]*applied
	routes  map[netip.Prefix]bool
}

// createDevice creates the TUN and the wireguard-go device, and serves
// its UAPI socket. A TUN name still held by a dying process (EBUSY right
// after a crash) is retried for up to 3 s.
func createDevice(name string, log *slog.Logger) (*wgDevice, error) {
	var t tun.Device
	var err error
	for deadline := time.Now().Add(3 * time.Second); ; {
		t, err = tun.CreateTUN(name, effects.MTU)
		if err == nil || !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return nil, fmt.Errorf("wireguard: create TUN %s: %w", name, err)
	}
	wlog := &device.Logger{
		Verbosef: func(string, ...any) {},
		Errorf: func(format string, args ...any) {
			log.Warn("wireguard-go: "+fmt.Sprintf(format, args...), "device", name)
		},
	}
	d := &wgDevice{name: name, log: log, tun: t, peers: map[string]*applied{}, routes: map[netip.Prefix]bool{}}
	d.dev = device.NewDevice(t, conn.NewDefaultBind(), wlog)
	// The standard UAPI socket, for `wg show`. Failing to serve it (for
	// example, another device of this name in another network namespace
	// sharing /var/run/wireguard) costs only the debugging view.
	if f, err := ipc.UAPIOpen(name); err != nil {
		log.Warn("wireguard: no UAPI socket; `wg show` will not see this device", "device", name, "err", err)
	} else if l, err := ipc.UAPIListen(name, f); err != nil {
		log.Warn("wireguard: no UAPI socket; `wg show` will not see this device", "device", name, "err", err)
	} else {
		d.uapi = l
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go d.dev.IpcHandle(c)
			}
		}()
	}
	return d, nil
}

func (d *wgDevice) close() {
	if d.uapi != nil {
		d.uapi.Close()
	}
	d.dev.Close() // closes the TUN: the kernel removes the link and its routes
}

func (d *wgDevice) link() (netlink.Link, error) {
	l, err := netlink.LinkByName(d.name)
	if err != nil {
		return nil, fmt.Errorf("wireguard: link %s: %w", d.name, err)
	}
	return l, nil
}

// alive reports whether the kernel link still exists.
func (d *wgDevice) alive() bool {
	_, err := netlink.LinkByName(d.name)
	return err == nil
}

// apply converges the whole device to cfg. It returns the keys of peers
// it added. The link comes up (and the wireguard-go device with it) before
// any peer is configured: a handshake sent by a device that is still down
// is lost, and wireguard-go then waits 5 s before it tries again.
func (d *wgDevice) apply(cfg *Config, priv wgtypes.Key) ([]string, error) {
	if err := d.ensureLink(cfg); err != nil {
		return nil, err
	}
	if err := d.dev.Up(); err != nil {
		return nil, fmt.Errorf("wireguard: bring %s up: %w", d.name, err)
	}
	if d.privPub != cfg.PublicKey || d.port != cfg.Port {
		if err := d.dev.IpcSet(fmt.Sprintf("private_key=%s\nlisten_port=%d\n", hexOf(priv), cfg.Port)); err != nil {
			return nil, fmt.Errorf("wireguard: configure %s: %w", d.name, err)
		}
		d.privPub, d.port = cfg.PublicKey, cfg.Port
	}
	want := make(map[string]*Peer, len(cfg.Peers)+len(d.peers))
	for k := range d.peers {
		want[k] = nil // gone unless cfg has it
	}
	for i := range cfg.Peers {
		want[cfg.Peers[i].PublicKey] = &cfg.Peers[i]
	}
	added, err := d.applyPeers(want, cfg.OwnPrefix())
	if err != nil {
		return added, err
	}
	// Routes that no peer accounts for (left by an earlier incarnation, or
	// added by hand with our protocol) go.
	wantRoutes := map[netip.Prefix]bool{}
	for _, p := range cfg.Routes() {
		wantRoutes[p] = true
	}
	var errs []error
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
		return nil, err
	}
	if text != "" {
		if err := d.dev.IpcSet(text); err != nil {
			return nil, fmt.Errorf("wireguard: configure peers of %s: %w", d.name, err)
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

func (d *wgDevice) route(p netip.Prefix) *netlink.Route {
	return &netlink.Route{LinkIndex: d.index, Dst: netconv.IPNet(p), Protocol: effects.RouteProtocol, Scope: netlink.SCOPE_LINK}
}

func (d *wgDevice) addRoute(p netip.Prefix) error {
	if err := netlink.RouteReplace(d.route(p)); err != nil {
		return fmt.Errorf("wireguard: route %s via %s: %w", p, d.name, err)
	}
	d.routes[p] = true
	return nil
}

func (d *wgDevice) delRoute(p netip.Prefix) error {
	if err := netlink.RouteDel(d.route(p)); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("wireguard: remove route %s via %s: %w", p, d.name, err)
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
	d.index = l.Attrs().Index
	if l.Attrs().MTU != effects.MTU {
		if err := netlink.LinkSetMTU(l, effects.MTU); err != nil {
			return fmt.Errorf("wireguard: set MTU of %s: %w", d.name, err)
		}
	}
	// No link-local address: router solicitations and MLD would only be
	// dropped by cryptokey routing.
	_ = netlink.LinkSetIP6AddrGenMode(l, 1) // IN6_ADDR_GEN_MODE_NONE; absent IPv6 is fine
	if d.addr != cfg.Address {
		addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return fmt.Errorf("wireguard: list addresses of %s: %w", d.name, err)
		}
		want := &netlink.Addr{IPNet: netconv.IPNet(cfg.Address)}
		if err := netlink.AddrReplace(l, want); err != nil {
			return fmt.Errorf("wireguard: address %s on %s: %w", cfg.Address, d.name, err)
		}
		for _, a := range addrs {
			if p, ok := netconv.Prefix(a.IPNet); ok && p != cfg.Address && !p.Addr().IsLinkLocalUnicast() {
				_ = netlink.AddrDel(l, &a)
			}
		}
		d.addr = cfg.Address
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(l); err != nil {
			return fmt.Errorf("wireguard: set %s up: %w", d.name, err)
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
	fresh := appliedFrom(st)
	for k, a := range fresh {
		if old := d.peers[k]; old != nil {
			a.Endpoint = old.Endpoint // the device may have roamed: not drift
		}
	}
	d.peers = fresh
	if st.ListenPort != d.port {
		d.port = 0 // forces private key and port to be set again
	}
	l, err := d.link()
	if err != nil {
		return err
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: l.Attrs().Index, Protocol: effects.RouteProtocol},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return fmt.Errorf("wireguard: list routes of %s: %w", d.name, err)
	}
	d.routes = map[netip.Prefix]bool{}
	for _, r := range routes {
		if p, ok := netconv.Prefix(r.Dst); ok {
			d.routes[p] = true
		}
	}
	d.addr = netip.Prefix{} // re-check the address
	return nil
}

func (d *wgDevice) stats() (*DeviceStats, error) {
	text, err := d.dev.IpcGet()
	if err != nil {
		return nil, fmt.Errorf("wireguard: read %s: %w", d.name, err)
	}
	return parseGet(text)
}

// handshake makes the device initiate a handshake with the peer now
// (wireguard-go sends at most one initiation per 5 s per peer). The
// initiation (two X25519 operations and a send) goes on beside the pass:
// an answer need not wait for it.
func (d *wgDevice) handshake(pub string) {
	k, err := wgtypes.ParseKey(pub)
	if err != nil {
		return
	}
	if p := d.dev.LookupPeer(device.NoisePublicKey(k)); p != nil {
		go func() { _ = p.SendHandshakeInitiation(false) }()
	}
}
