//go:build linux

package bridge

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
)

// fakeKernel is an in-memory Kernel: a node namespace, processes each in
// a namespace of their own, and the kernel behaviour the reconciler
// relies on (a veth pair dies whole; a link takes its addresses, routes
// and sysctls with it; a namespace takes its links with it; a port leaves
// a deleted bridge; names are unique in a namespace; an alias is at most
// 255 bytes). render prints it as text. fail injects an error into an
// operation.
type fakeKernel struct {
	*fakeWorld
	node   *fakeNS
	faults []*fault
	open   int      // Netns handles not yet closed
	log    []string // mutating operations, in order
	arps   []string // announcements
	closed bool
	counts map[string]int // operations by name, since calls read them
	// crashed makes every operation fail (a daemon killed: what it had
	// not done yet never happens).
	crashed bool
}

// fakeWorld is what the kernels of two node namespaces on one machine
// share: the processes and their namespaces, and one lock.
type fakeWorld struct {
	mu      sync.Mutex
	procs   map[uint32]*fakeNS
	nextIno uint64
	nextMAC uint32
}

type fakeNS struct {
	ino     uint64
	links   map[int]*fakeLink
	routes  []Route
	sysctl  map[string]string // by path under /proc/sys
	nextIdx int
}

type fakeLink struct {
	Link
	ns    *fakeNS
	peer  *fakeLink
	addrs []netip.Prefix
	// mtuPinned: the MTU was set after creation; a bridge's MTU otherwise
	// follows its ports (the smallest of theirs; 1500 with none).
	mtuPinned bool
}

// portsChanged adjusts a bridge's MTU as the kernel does when a port
// joins or leaves it.
func (ns *fakeNS) portsChanged(bridge int) {
	br := ns.links[bridge]
	if br == nil || br.Kind != "bridge" || br.mtuPinned {
		return
	}
	mtu := 0
	for _, p := range ns.links {
		if p.Master == bridge && (mtu == 0 || p.MTU < mtu) {
			mtu = p.MTU
		}
	}
	if mtu == 0 {
		mtu = 1500
	}
	br.MTU = mtu
}

// fault makes the operation op on target ("" any target) fail with err,
// times more times (negative: until cleared).
type fault struct {
	op, target string
	err        error
	times      int
}

func newFakeKernel() *fakeKernel {
	w := &fakeWorld{procs: map[uint32]*fakeNS{}, nextIno: 4026531840}
	return &fakeKernel{fakeWorld: w, node: w.newNS()}
}

// sibling is the kernel of another node namespace on the same machine
// (a second daemon): it sees the same processes.
func (k *fakeKernel) sibling() *fakeKernel {
	k.mu.Lock()
	defer k.mu.Unlock()
	return &fakeKernel{fakeWorld: k.fakeWorld, node: k.newNS()}
}

func (w *fakeWorld) newNS() *fakeNS {
	w.nextIno++
	ns := &fakeNS{ino: w.nextIno, links: map[int]*fakeLink{}, sysctl: map[string]string{}, nextIdx: 1}
	ns.add(&fakeLink{Link: Link{Name: "lo", Kind: "device", MTU: 65536}})
	return ns
}

func (ns *fakeNS) add(l *fakeLink) *fakeLink {
	l.Index, l.ns = ns.nextIdx, ns
	ns.nextIdx++
	ns.links[l.Index] = l
	return l
}

func (ns *fakeNS) byName(name string) *fakeLink {
	for _, l := range ns.links {
		if l.Name == name {
			return l
		}
	}
	return nil
}

// fail injects err into op on target (a link name, a pid, a sysctl path;
// "" for any), for the next times calls (negative: until clear). The
// fault returned is for spent.
func (k *fakeKernel) fail(op, target string, err error, times int) *fault {
	k.mu.Lock()
	defer k.mu.Unlock()
	f := &fault{op: op, target: target, err: err, times: times}
	k.faults = append(k.faults, f)
	return f
}

// spent reports whether f fired as many times as it was injected for.
func (k *fakeKernel) spent(f *fault) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return f.times == 0
}

func (k *fakeKernel) clear() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.faults = nil
}

// hit returns the injected error for op on target, if any. Called with
// k.mu held.
func (k *fakeKernel) hit(op, target string) error {
	if k.counts == nil {
		k.counts = map[string]int{}
	}
	k.counts[op]++
	if k.closed {
		return fmt.Errorf("fake %s: kernel used after Close", op)
	}
	if k.crashed {
		return fmt.Errorf("fake %s %s: %w", op, target, errCrashed)
	}
	for _, f := range k.faults {
		if f.op == op && (f.target == "" || f.target == target) && f.times != 0 {
			if f.times > 0 {
				f.times--
			}
			return fmt.Errorf("fake %s %s: %w", op, target, f.err)
		}
	}
	return nil
}

func (k *fakeKernel) record(format string, args ...any) {
	k.log = append(k.log, fmt.Sprintf(format, args...))
}

// calls returns how often op was called since the last calls(op).
func (k *fakeKernel) calls(op string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := k.counts[op]
	delete(k.counts, op)
	return n
}

// mutations returns the mutating operations since the last call.
func (k *fakeKernel) mutations() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := k.log
	k.log = nil
	return out
}

func noLink(what any) error { return fmt.Errorf("fake: link %v: %w", what, syscall.ENODEV) }

func (ns *fakeNS) get(index int) (*fakeLink, error) {
	if l := ns.links[index]; l != nil {
		return l, nil
	}
	return nil, noLink(index)
}

func (ns *fakeNS) nameOf(index int) string {
	if l := ns.links[index]; l != nil {
		return l.Name
	}
	return fmt.Sprint(index)
}

// remove deletes a link as the kernel does: its peer too, its addresses
// and routes, its ports' master, and its sysctls.
func remove(l *fakeLink) {
	for _, x := range []*fakeLink{l, l.peer} {
		if x == nil || x.ns.links[x.Index] != x {
			continue
		}
		delete(x.ns.links, x.Index)
		x.ns.routes = slices.DeleteFunc(x.ns.routes, func(r Route) bool { return r.Link == x.Index })
		for _, p := range x.ns.links {
			if p.Master == x.Index {
				p.Master = 0
			}
		}
		if x.Master != 0 {
			x.ns.portsChanged(x.Master)
		}
		for path := range x.ns.sysctl {
			if strings.Contains(path, "/"+x.Name+"/") {
				delete(x.ns.sysctl, path)
			}
		}
	}
}

func (w *fakeWorld) macOf() net.HardwareAddr {
	w.nextMAC++
	return net.HardwareAddr{0x02, 0xfa, byte(w.nextMAC >> 24), byte(w.nextMAC >> 16), byte(w.nextMAC >> 8), byte(w.nextMAC)}
}

// spawn starts a process pid in a new namespace (a container).
func (k *fakeKernel) spawn(pid uint32) uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	ns := k.newNS()
	k.procs[pid] = ns
	return ns.ino
}

// spawnAs starts a process pid in a new namespace with the given inode
// (to mirror a real container).
func (k *fakeKernel) spawnAs(pid uint32, ino uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	ns := k.newNS()
	ns.ino = ino
	k.procs[pid] = ns
}

// kill ends process pid; its namespace dies with it, and its links (and
// their peers in the node).
func (k *fakeKernel) kill(pid uint32) {
	k.mu.Lock()
	defer k.mu.Unlock()
	ns := k.procs[pid]
	delete(k.procs, pid)
	if ns != nil {
		for _, l := range ns.links {
			remove(l)
		}
	}
}

// --- Kernel ---

func (k *fakeKernel) Links() ([]Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.hit("links", ""); err != nil {
		return nil, err
	}
	var out []Link
	for _, l := range k.node.links {
		out = append(out, l.snapshot())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out, nil
}

func (l *fakeLink) snapshot() Link {
	c := l.Link
	c.MAC = slices.Clone(l.MAC)
	if l.peer != nil {
		c.Peer = l.peer.Index
	}
	return c
}

func (k *fakeKernel) LinkByName(name string) (Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.node.linkByName(k, "link", name)
}

func (ns *fakeNS) linkByName(k *fakeKernel, op, name string) (Link, error) {
	if err := k.hit(op, name); err != nil {
		return Link{}, err
	}
	if l := ns.byName(name); l != nil {
		return l.snapshot(), nil
	}
	return Link{}, noLink(name)
}

func (k *fakeKernel) Index(name string) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.hit("index", name); err != nil {
		return 0, err
	}
	if l := k.node.byName(name); l != nil {
		return l.Index, nil
	}
	return 0, noLink(name)
}

func (k *fakeKernel) AddBridge(name string, mac net.HardwareAddr) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.hit("addbridge", name); err != nil {
		return err
	}
	if k.node.byName(name) != nil {
		return fmt.Errorf("fake: %s: %w", name, syscall.EEXIST)
	}
	k.node.add(&fakeLink{Link: Link{Name: name, Kind: "bridge", MTU: 1500, MAC: slices.Clone(mac)}})
	k.record("addbridge %s", name)
	return nil
}

func (k *fakeKernel) AddVeth(host, peer string, mtu, master int, ns Netns) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.hit("addveth", host); err != nil {
		return err
	}
	fns, ok := ns.(*fakeNetns)
	if !ok || fns.closed {
		return fmt.Errorf("fake: veth %s: namespace not open: %w", host, syscall.EBADF)
	}
	target := fns.ns
	if k.node.byName(host) != nil || target.byName(peer) != nil {
		return fmt.Errorf("fake: veth %s/%s: %w", host, peer, syscall.EEXIST)
	}
	if master != 0 {
		if m := k.node.links[master]; m == nil || m.Kind != "bridge" {
			return fmt.Errorf("fake: master %d: %w", master, syscall.ENODEV)
		}
	}
	h := k.node.add(&fakeLink{Link: Link{Name: host, Kind: "veth", MTU: mtu, MAC: k.macOf(), Up: true, Master: master}})
	c := target.add(&fakeLink{Link: Link{Name: peer, Kind: "veth", MTU: mtu, MAC: k.macOf()}})
	h.peer, c.peer = c, h
	k.node.portsChanged(master)
	k.record("addveth %s %s@%d", host, peer, target.ino)
	return nil
}

func (k *fakeKernel) DelLink(l Link) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	var x *fakeLink
	if l.Index != 0 {
		x = k.node.links[l.Index]
	} else {
		x = k.node.byName(l.Name)
	}
	name := l.Name
	if x != nil {
		name = x.Name
	}
	if err := k.hit("dellink", name); err != nil {
		return err
	}
	if x == nil {
		return noLink(name)
	}
	remove(x)
	k.record("dellink %s", name)
	return nil
}

func (k *fakeKernel) SetAlias(name, alias string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.hit("setalias", name); err != nil {
		return err
	}
	l := k.node.byName(name)
	if l == nil {
		return noLink(name)
	}
	return k.setAlias(l, alias)
}

func (k *fakeKernel) setAlias(l *fakeLink, alias string) error {
	if len(alias) > aliasMax {
		return fmt.Errorf("fake: alias of %s: %d bytes: %w", l.Name, len(alias), syscall.EINVAL)
	}
	if l.Alias != alias {
		l.Alias = alias
		k.record("setalias %s %q", l.Name, alias)
	}
	return nil
}

// set runs fn on the node link index, after the fault check of op.
func (k *fakeKernel) set(op string, index int, fn func(*fakeLink) (bool, error)) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.node.set(k, op, index, fn)
}

// set runs fn on a link, after the fault check of op; fn reports
// whether it changed anything (what is recorded as a mutation).
func (ns *fakeNS) set(k *fakeKernel, op string, index int, fn func(*fakeLink) (bool, error)) error {
	if err := k.hit(op, ns.nameOf(index)); err != nil {
		return err
	}
	l, err := ns.get(index)
	if err != nil {
		return err
	}
	changed, err := fn(l)
	if err != nil {
		return err
	}
	if changed {
		k.record("%s %s", op, l.Name)
	}
	return nil
}

func (k *fakeKernel) SetMTU(index, mtu int) error {
	return k.set("setmtu", index, func(l *fakeLink) (bool, error) {
		if l.MTU == mtu {
			return false, nil // the kernel does nothing: not pinned
		}
		l.MTU, l.mtuPinned = mtu, true
		return true, nil
	})
}

func (k *fakeKernel) SetMAC(index int, mac net.HardwareAddr) error {
	return k.set("setmac", index, func(l *fakeLink) (bool, error) {
		c := l.MAC.String() != mac.String()
		l.MAC = slices.Clone(mac)
		return c, nil
	})
}

func (k *fakeKernel) SetUp(index int) error {
	return k.set("setup", index, func(l *fakeLink) (bool, error) { c := !l.Up; l.Up = true; return c, nil })
}

func (k *fakeKernel) SetMaster(index, master int) error {
	return k.set("setmaster", index, func(l *fakeLink) (bool, error) {
		if m := k.node.links[master]; m == nil || m.Kind != "bridge" {
			return false, fmt.Errorf("fake: master %d: %w", master, syscall.ENODEV)
		}
		c := l.Master != master
		old := l.Master
		l.Master = master
		k.node.portsChanged(old)
		k.node.portsChanged(master)
		return c, nil
	})
}

func (k *fakeKernel) Addrs(index int) ([]netip.Prefix, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.node.addrList(k, "addrs", index)
}

func (ns *fakeNS) addrList(k *fakeKernel, op string, index int) ([]netip.Prefix, error) {
	if err := k.hit(op, ns.nameOf(index)); err != nil {
		return nil, err
	}
	l, err := ns.get(index)
	if err != nil {
		return nil, err
	}
	return slices.Clone(l.addrs), nil
}

func (k *fakeKernel) Peer(host Link) (Link, []netip.Prefix, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.hit("peer", host.Name); err != nil {
		return Link{}, nil, err
	}
	l := k.node.links[host.Index]
	if l == nil || l.peer == nil {
		return Link{}, nil, noLink(host.Name + "'s peer")
	}
	return l.peer.snapshot(), slices.Clone(l.peer.addrs), nil
}

func replaceAddr(l *fakeLink, p netip.Prefix) (bool, error) {
	for i, q := range l.addrs {
		if q.Addr() == p.Addr() {
			l.addrs[i] = p
			return q != p, nil
		}
	}
	l.addrs = append(l.addrs, p)
	return true, nil
}

func delAddr(l *fakeLink, p netip.Prefix) (bool, error) {
	n := len(l.addrs)
	l.addrs = slices.DeleteFunc(l.addrs, func(q netip.Prefix) bool { return q == p })
	if len(l.addrs) == n {
		return false, fmt.Errorf("fake: %s on %s: %w", p, l.Name, syscall.EADDRNOTAVAIL)
	}
	return true, nil
}

func (k *fakeKernel) ReplaceAddr(index int, p netip.Prefix, _ bool) error {
	return k.set("addaddr", index, func(l *fakeLink) (bool, error) { return replaceAddr(l, p) })
}

func (k *fakeKernel) DelAddr(index int, p netip.Prefix) error {
	return k.set("deladdr", index, func(l *fakeLink) (bool, error) { return delAddr(l, p) })
}

func (k *fakeKernel) ReplaceRoute(r Route) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.node.replaceRoute(k, "route", r)
}

// replaceRoute checks what the kernel checks of a route here: its link,
// a preferred source that is an address of the namespace, a gateway that
// is on the link.
func (ns *fakeNS) replaceRoute(k *fakeKernel, op string, r Route) error {
	if err := k.hit(op, r.Dst.String()); err != nil {
		return err
	}
	l, err := ns.get(r.Link)
	if err != nil {
		return err
	}
	if r.Src.IsValid() && !ns.hasAddr(r.Src) {
		return fmt.Errorf("fake: route %s src %s: %w", r.Dst, r.Src, syscall.EINVAL)
	}
	if r.Gw.IsValid() && !r.Gw.IsLinkLocalUnicast() && !slices.ContainsFunc(l.addrs, func(p netip.Prefix) bool { return p.Masked().Contains(r.Gw) }) {
		return fmt.Errorf("fake: route %s via %s: %w", r.Dst, r.Gw, syscall.ENETUNREACH)
	}
	r.Dst = r.Dst.Masked()
	if slices.Contains(ns.routes, r) {
		return nil
	}
	ns.routes = slices.DeleteFunc(ns.routes, func(q Route) bool { return q.Dst == r.Dst })
	ns.routes = append(ns.routes, r)
	k.record("%s %s dev %s", op, r.Dst, l.Name)
	return nil
}

func (ns *fakeNS) hasAddr(a netip.Addr) bool {
	for _, l := range ns.links {
		for _, p := range l.addrs {
			if p.Addr() == a {
				return true
			}
		}
	}
	return false
}

func (k *fakeKernel) Announce(bridge int, mac net.HardwareAddr, ip netip.Addr) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.hit("announce", ip.String()); err != nil {
		return err
	}
	if !ip.Is4() || bridge == 0 {
		return nil
	}
	k.arps = append(k.arps, fmt.Sprintf("%s is-at %s on %s", ip, mac, k.node.nameOf(bridge)))
	return nil
}

func (k *fakeKernel) WriteSysctl(path, value string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.hit("sysctl", path); err != nil {
		return err
	}
	f := strings.Split(path, "/")
	if len(f) >= 4 && (f[2] == "conf" || f[2] == "neigh") && f[3] != "all" && f[3] != "default" && k.node.byName(f[3]) == nil {
		return &os.PathError{Op: "open", Path: "/proc/sys/" + path, Err: syscall.ENOENT}
	}
	if k.node.sysctl[path] != value {
		k.node.sysctl[path] = value
		k.record("sysctl %s=%s", path, value)
	}
	return nil
}

func (k *fakeKernel) NetnsInode(pid uint32) (uint64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	path := fmt.Sprintf("/proc/%d/ns/net", pid)
	if err := k.hit("netnsinode", fmt.Sprint(pid)); err != nil {
		return 0, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	ns := k.procs[pid]
	if ns == nil {
		return 0, &os.PathError{Op: "stat", Path: path, Err: syscall.ENOENT}
	}
	return ns.ino, nil
}

func (k *fakeKernel) OpenNetns(pid uint32) (Netns, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	path := fmt.Sprintf("/proc/%d/ns/net", pid)
	if err := k.hit("opennetns", fmt.Sprint(pid)); err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	ns := k.procs[pid]
	if ns == nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: syscall.ENOENT}
	}
	k.open++
	return &fakeNetns{k: k, ns: ns, pid: pid}, nil
}

func (k *fakeKernel) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.closed = true
	return nil
}

// openHandles is the number of namespaces opened and not closed.
func (k *fakeKernel) openHandles() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.open
}

// fakeNetns is an open container namespace. Its operations' fault names
// are "ns." and the node's ones.
type fakeNetns struct {
	k      *fakeKernel
	ns     *fakeNS
	pid    uint32
	closed bool
}

func (n *fakeNetns) lock() error {
	n.k.mu.Lock()
	if n.closed {
		n.k.mu.Unlock()
		return fmt.Errorf("fake: namespace of %d used after Close: %w", n.pid, syscall.EBADF)
	}
	return nil
}

func (n *fakeNetns) Inode() uint64 { return n.ns.ino }

func (n *fakeNetns) LinkByName(name string) (Link, error) {
	if err := n.lock(); err != nil {
		return Link{}, err
	}
	defer n.k.mu.Unlock()
	return n.ns.linkByName(n.k, "ns.link", name)
}

func (n *fakeNetns) Addrs(index int) ([]netip.Prefix, error) {
	if err := n.lock(); err != nil {
		return nil, err
	}
	defer n.k.mu.Unlock()
	return n.ns.addrList(n.k, "ns.addrs", index)
}

func (n *fakeNetns) set(op string, index int, fn func(*fakeLink) (bool, error)) error {
	if err := n.lock(); err != nil {
		return err
	}
	defer n.k.mu.Unlock()
	return n.ns.set(n.k, op, index, fn)
}

func (n *fakeNetns) ReplaceAddr(index int, p netip.Prefix) error {
	return n.set("ns.addaddr", index, func(l *fakeLink) (bool, error) { return replaceAddr(l, p) })
}

func (n *fakeNetns) DelAddr(index int, p netip.Prefix) error {
	return n.set("ns.deladdr", index, func(l *fakeLink) (bool, error) { return delAddr(l, p) })
}

func (n *fakeNetns) SetUp(index int) error {
	return n.set("ns.setup", index, func(l *fakeLink) (bool, error) { c := !l.Up; l.Up = true; return c, nil })
}

func (n *fakeNetns) SetAlias(index int, alias string) error {
	if err := n.lock(); err != nil {
		return err
	}
	defer n.k.mu.Unlock()
	if err := n.k.hit("ns.setalias", n.ns.nameOf(index)); err != nil {
		return err
	}
	l, err := n.ns.get(index)
	if err != nil {
		return err
	}
	return n.k.setAlias(l, alias)
}

func (n *fakeNetns) ReplaceRoute(r Route) error {
	if err := n.lock(); err != nil {
		return err
	}
	defer n.k.mu.Unlock()
	return n.ns.replaceRoute(n.k, "ns.route", r)
}

func (n *fakeNetns) Close() error {
	n.k.mu.Lock()
	defer n.k.mu.Unlock()
	if !n.closed {
		n.closed = true
		n.k.open--
	}
	return nil
}

func (k *fakeKernel) isProc(ns *fakeNS) bool {
	for _, p := range k.procs {
		if p == ns {
			return true
		}
	}
	return false
}

// --- rendering ---

// render prints the fake OS: the node's links (with their addresses),
// routes and sysctls, then each process's namespace. Indices are left out
// (masters and peers are named), so the text depends only on what exists.
func (k *fakeKernel) render() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var b strings.Builder
	b.WriteString("node\n")
	k.renderNS(&b, k.node)
	var pids []uint32
	for pid := range k.procs {
		pids = append(pids, pid)
	}
	slices.Sort(pids)
	for _, pid := range pids {
		fmt.Fprintf(&b, "pid %d\n", pid)
		k.renderNS(&b, k.procs[pid])
	}
	return b.String()
}

func (k *fakeKernel) whereIs(l *fakeLink) string {
	if l.ns == k.node {
		return "node"
	}
	if _, ok := l.ns.links[1]; ok && l.ns.ino != 0 && !k.isProc(l.ns) {
		return "another node"
	}
	for pid, ns := range k.procs {
		if ns == l.ns {
			return fmt.Sprintf("pid %d", pid)
		}
	}
	return "?"
}

func (k *fakeKernel) renderNS(b *strings.Builder, ns *fakeNS) {
	var ls []*fakeLink
	for _, l := range ns.links {
		ls = append(ls, l)
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i].Name < ls[j].Name })
	for _, l := range ls {
		if l.Name == "lo" {
			if l.Up {
				b.WriteString("  lo up\n")
			}
			continue
		}
		fmt.Fprintf(b, "  %s %s mtu %d", l.Kind, l.Name, l.MTU)
		if l.Kind == "bridge" {
			fmt.Fprintf(b, " mac %s", l.MAC)
		}
		if l.Up {
			b.WriteString(" up")
		}
		if l.Master != 0 {
			fmt.Fprintf(b, " master %s", ns.nameOf(l.Master))
		}
		if l.peer != nil {
			fmt.Fprintf(b, " peer %s/%s", k.whereIs(l.peer), l.peer.Name)
		}
		if l.Alias != "" {
			fmt.Fprintf(b, " alias %q", l.Alias)
		}
		b.WriteString("\n")
		addrs := slices.Clone(l.addrs)
		slices.SortFunc(addrs, func(x, y netip.Prefix) int { return x.Addr().Compare(y.Addr()) })
		for _, p := range addrs {
			fmt.Fprintf(b, "    addr %s\n", p)
		}
	}
	var rs []string
	for _, r := range ns.routes {
		s := fmt.Sprintf("  route %s", r.Dst)
		if r.Gw.IsValid() {
			s += " via " + r.Gw.String()
		}
		s += " dev " + ns.nameOf(r.Link)
		if r.OnLink {
			s += " scope link"
		}
		if r.Src.IsValid() {
			s += " src " + r.Src.String()
		}
		if r.Protocol != 0 {
			s += fmt.Sprintf(" proto %d", r.Protocol)
		}
		rs = append(rs, s+"\n")
	}
	sort.Strings(rs)
	for _, s := range rs {
		b.WriteString(s)
	}
	var paths []string
	for p := range ns.sysctl {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		fmt.Fprintf(b, "  sysctl %s=%s\n", p, ns.sysctl[p])
	}
}
