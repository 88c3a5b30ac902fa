package wireguard

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// fakeKernel is an in-memory Kernel: links with addresses and routes, and
// devices that interpret UAPI text the way wireguard-go does (the parts
// this package uses). Every operation can be made to fail (fail), and
// render prints the whole host as text for assertions.
type fakeKernel struct {
	mu     sync.Mutex
	links  map[string]*fakeLink
	next   int
	taken  map[uint16]bool // UDP ports another process holds
	faults map[string]*fault
	// creates counts devices made, open those not closed yet: a device
	// the reconciler dropped without closing shows as open > its devices.
	creates, open int
}

type fault struct {
	err  error
	left int // calls it still fails; < 0: until cleared
}

type fakeLink struct {
	name   string
	index  int
	mtu    int
	up     bool
	addrs  map[netip.Prefix]bool
	routes map[netip.Prefix]bool
	dev    *fakeDevice
}

type fakeDevice struct {
	k          *fakeKernel
	name       string
	closed     bool // Close was called
	dead       bool // its link was deleted: every call fails
	up         bool
	priv       string // hex
	port       uint16
	peers      map[string]*fakePeer // by hex key
	order      []string
	sets       int      // IpcSet calls that changed something
	handshakes []string // base64 keys, in order
}

type fakePeer struct {
	endpoint  string
	keepalive int
	allowed   []netip.Prefix
}

var errDeviceGone = errors.New("fake: device closed")

func newFakeKernel() *fakeKernel {
	return &fakeKernel{links: map[string]*fakeLink{}, next: 10, taken: map[uint16]bool{}, faults: map[string]*fault{}}
}

// fail makes the next times calls of op fail with err (times < 0: every
// call). Ops: create, link, mtu, up, addrgen, addrs, addr-replace,
// addr-del, routes, route-replace, route-del, ipcset, ipcget, dev-up.
func (k *fakeKernel) fail(op string, err error, times int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.faults[op] = &fault{err: err, left: times}
}

// fault returns the injected error of op, if any; k.mu is held.
func (k *fakeKernel) fault(op string) error {
	f := k.faults[op]
	if f == nil {
		return nil
	}
	if f.left > 0 {
		f.left--
		if f.left == 0 {
			delete(k.faults, op)
		}
	}
	return f.err
}

func (k *fakeKernel) CreateDevice(name string, mtu int, _ *slog.Logger) (Device, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.fault("create"); err != nil {
		return nil, fmt.Errorf("wireguard: %s: create the TUN: %w", name, err)
	}
	if k.links[name] != nil {
		return nil, fmt.Errorf("wireguard: %s: create the TUN: TUNSETIFF: %w", name, syscall.EBUSY)
	}
	k.next++
	d := &fakeDevice{k: k, name: name, peers: map[string]*fakePeer{}}
	k.links[name] = &fakeLink{name: name, index: k.next, mtu: mtu, addrs: map[netip.Prefix]bool{}, routes: map[netip.Prefix]bool{}, dev: d}
	k.creates++
	k.open++
	return d, nil
}

// byIndex finds l's link; k.mu is held.
func (k *fakeKernel) byIndex(l Link) (*fakeLink, error) {
	for _, fl := range k.links {
		if fl.index == l.Index {
			return fl, nil
		}
	}
	return nil, fmt.Errorf("link index %d: %w", l.Index, syscall.ENODEV)
}

func (k *fakeKernel) Link(name string) (Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.fault("link"); err != nil {
		return Link{}, fmt.Errorf("wireguard: link %s: %w", name, err)
	}
	fl := k.links[name]
	if fl == nil {
		return Link{}, fmt.Errorf("%w: %s", ErrLinkNotFound, name)
	}
	return Link{Name: name, Index: fl.index, MTU: fl.mtu, Up: fl.up}, nil
}

// linkOp runs fn on l's link unless op is made to fail.
func (k *fakeKernel) linkOp(op string, l Link, fn func(*fakeLink) error) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.fault(op); err != nil {
		return err
	}
	fl, err := k.byIndex(l)
	if err != nil {
		return err
	}
	return fn(fl)
}

func (k *fakeKernel) SetMTU(l Link, mtu int) error {
	return k.linkOp("mtu", l, func(fl *fakeLink) error { fl.mtu = mtu; return nil })
}

func (k *fakeKernel) SetUp(l Link) error {
	return k.linkOp("up", l, func(fl *fakeLink) error { fl.up = true; return nil })
}

func (k *fakeKernel) DisableAddrGen(l Link) error {
	return k.linkOp("addrgen", l, func(*fakeLink) error { return nil })
}

func (k *fakeKernel) Addrs(l Link) (out []netip.Prefix, err error) {
	err = k.linkOp("addrs", l, func(fl *fakeLink) error {
		for p := range fl.addrs {
			out = append(out, p)
		}
		return nil
	})
	return out, err
}

func (k *fakeKernel) ReplaceAddr(l Link, p netip.Prefix) error {
	return k.linkOp("addr-replace", l, func(fl *fakeLink) error { fl.addrs[p] = true; return nil })
}

func (k *fakeKernel) DelAddr(l Link, p netip.Prefix) error {
	return k.linkOp("addr-del", l, func(fl *fakeLink) error { delete(fl.addrs, p); return nil })
}

func (k *fakeKernel) Routes(l Link) (out []netip.Prefix, err error) {
	err = k.linkOp("routes", l, func(fl *fakeLink) error {
		for p := range fl.routes {
			out = append(out, p)
		}
		return nil
	})
	return out, err
}

func (k *fakeKernel) ReplaceRoute(l Link, p netip.Prefix) error {
	return k.linkOp("route-replace", l, func(fl *fakeLink) error { fl.routes[p] = true; return nil })
}

func (k *fakeKernel) DelRoute(l Link, p netip.Prefix) error {
	return k.linkOp("route-del", l, func(fl *fakeLink) error { delete(fl.routes, p); return nil })
}

// deleteLink is `ip link del name`: the link goes with its addresses and
// routes, and its device stops working (wireguard-go's reader fails).
func (k *fakeKernel) deleteLink(name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if fl := k.links[name]; fl != nil {
		fl.dev.dead = true
		delete(k.links, name)
	}
}

// device returns the live device of link name (nil if none).
func (k *fakeKernel) device(name string) *fakeDevice {
	k.mu.Lock()
	defer k.mu.Unlock()
	if fl := k.links[name]; fl != nil {
		return fl.dev
	}
	return nil
}

// withLink runs fn on link name under the lock (a hand edit).
func (k *fakeKernel) withLink(name string, fn func(*fakeLink)) {
	k.mu.Lock()
	defer k.mu.Unlock()
	fn(k.links[name])
}

func (k *fakeKernel) counts() (creates, open int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.creates, k.open
}

// render prints every link, sorted, with its device: the host as text.
func (k *fakeKernel) render() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(k.links)) {
		fl := k.links[name]
		d := fl.dev
		fmt.Fprintf(&b, "link %s mtu %d up %v\n", name, fl.mtu, fl.up)
		for _, p := range projectionsSorted(fl.addrs) {
			fmt.Fprintf(&b, "  addr %s\n", p)
		}
		for _, p := range projectionsSorted(fl.routes) {
			fmt.Fprintf(&b, "  route %s\n", p)
		}
		fmt.Fprintf(&b, "  device up %v port %d key %v\n", d.up, d.port, d.priv != "")
		keys := append([]string(nil), d.order...)
		sort.Strings(keys)
		for _, hk := range keys {
			p := d.peers[hk]
			b64, _ := b64Key(hk)
			fmt.Fprintf(&b, "  peer %s endpoint %q keepalive %d allowed %v\n", b64[:8], p.endpoint, p.keepalive, p.allowed)
		}
	}
	return b.String()
}

func projectionsSorted(m map[netip.Prefix]bool) []netip.Prefix {
	var out []netip.Prefix
	for p := range m {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// Device side.

func (d *fakeDevice) check(op string) error {
	if err := d.k.fault(op); err != nil {
		return err
	}
	if d.closed || d.dead {
		return errDeviceGone
	}
	return nil
}

func (d *fakeDevice) Up() error {
	d.k.mu.Lock()
	defer d.k.mu.Unlock()
	if err := d.check("dev-up"); err != nil {
		return err
	}
	d.up = true
	return nil
}

func (d *fakeDevice) Close() {
	d.k.mu.Lock()
	defer d.k.mu.Unlock()
	if d.closed {
		return
	}
	d.closed = true
	d.k.open--
	if fl := d.k.links[d.name]; fl != nil && fl.dev == d {
		delete(d.k.links, d.name)
	}
}

func (d *fakeDevice) Handshake(pub wgtypes.Key) {
	d.k.mu.Lock()
	defer d.k.mu.Unlock()
	if d.peers[hex.EncodeToString(pub[:])] != nil {
		d.handshakes = append(d.handshakes, base64.StdEncoding.EncodeToString(pub[:]))
	}
}

// IpcSet interprets the lines as wireguard-go does: device lines, then
// peers from each public_key line; a failing line leaves the lines before
// it applied.
func (d *fakeDevice) IpcSet(text string) error {
	d.k.mu.Lock()
	defer d.k.mu.Unlock()
	if err := d.check("ipcset"); err != nil {
		return err
	}
	d.sets++
	var cur *fakePeer
	var curKey string
	created := false
	for _, line := range strings.Split(text, "\n") {
		if line == "" {
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return fmt.Errorf("IPC error -71: failed to parse line %q", line)
		}
		if key != "public_key" && cur == nil && curKey != "" {
			continue // a peer skipped by update_only or removed
		}
		switch key {
		case "private_key":
			d.priv = val
		case "listen_port":
			n, err := strconv.ParseUint(val, 10, 16)
			if err != nil {
				return fmt.Errorf("IPC error -22: failed to parse listen_port: %w", err)
			}
			if d.k.taken[uint16(n)] {
				d.port = 0 // the old socket was closed first
				return fmt.Errorf("IPC error -98: failed to set listen_port: listen udp4 :%d: bind: %w", n, syscall.EADDRINUSE)
			}
			d.port = uint16(n)
		case "public_key":
			curKey = val
			cur = d.peers[val]
			created = cur == nil
			if created {
				cur = &fakePeer{}
				d.peers[val] = cur
				d.order = append(d.order, val)
			}
		case "update_only":
			if created {
				d.removePeer(curKey)
				cur = nil
			}
		case "remove":
			d.removePeer(curKey)
			cur = nil
		case "endpoint":
			cur.endpoint = val
		case "persistent_keepalive_interval":
			cur.keepalive, _ = strconv.Atoi(val)
		case "replace_allowed_ips":
			cur.allowed = nil
		case "allowed_ip":
			if s, del := strings.CutPrefix(val, "-"); del {
				p := netip.MustParsePrefix(s)
				cur.allowed = slices.DeleteFunc(cur.allowed, func(q netip.Prefix) bool { return q == p })
			} else if p := netip.MustParsePrefix(val); !slices.Contains(cur.allowed, p) {
				cur.allowed = append(cur.allowed, p)
			}
		default:
			return fmt.Errorf("IPC error -22: unknown key %q", key)
		}
	}
	return nil
}

func (d *fakeDevice) removePeer(hk string) {
	delete(d.peers, hk)
	d.order = slices.DeleteFunc(d.order, func(k string) bool { return k == hk })
}

func (d *fakeDevice) IpcGet() (string, error) {
	d.k.mu.Lock()
	defer d.k.mu.Unlock()
	if err := d.check("ipcget"); err != nil {
		return "", err
	}
	var b strings.Builder
	if d.priv != "" {
		fmt.Fprintf(&b, "private_key=%s\n", d.priv)
	}
	if d.port != 0 {
		fmt.Fprintf(&b, "listen_port=%d\n", d.port)
	}
	for _, hk := range d.order {
		p := d.peers[hk]
		fmt.Fprintf(&b, "public_key=%s\nprotocol_version=1\n", hk)
		if p.endpoint != "" {
			fmt.Fprintf(&b, "endpoint=%s\n", p.endpoint)
		}
		fmt.Fprintf(&b, "last_handshake_time_sec=0\nlast_handshake_time_nsec=0\ntx_bytes=0\nrx_bytes=0\npersistent_keepalive_interval=%d\n", p.keepalive)
		for _, a := range p.allowed {
			fmt.Fprintf(&b, "allowed_ip=%s\n", a)
		}
	}
	b.WriteString("errno=0\n\n")
	return b.String(), nil
}

// handSet edits a device by hand (`wg set`).
func (d *fakeDevice) handSet(text string) {
	if err := d.IpcSet(text); err != nil {
		panic(err)
	}
}

func (d *fakeDevice) counters() (sets int, handshakes []string) {
	d.k.mu.Lock()
	defer d.k.mu.Unlock()
	return d.sets, append([]string(nil), d.handshakes...)
}
