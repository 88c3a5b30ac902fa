package bridge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/zlayer/overlayd/effects/internal/netconv"
)

// linuxKernel is the Kernel of the calling process's network namespace,
// through netlink. Requests that are on an attach's critical path are
// built by hand where the netlink package would take more round trips
// (createVeth, setAlias, delLink); link lookups by name go through an
// ioctl on the node socket.
type linuxKernel struct {
	sock  *nodeSocket
	peers peerSocket
}

// newKernel returns the real Kernel: the network namespace of the calling
// process (every thread of the daemon lives in it).
func newKernel() Kernel { return &linuxKernel{sock: newNodeSocket()} }

// dumpTries bounds the tries of a dump the kernel interrupted (what it
// lists changed while it was being read: the list may be inconsistent).
const dumpTries = 4

// dump runs list, a dump, again while the kernel says it was interrupted,
// at most dumpTries times. An error (the last one) comes with no list.
func dump[T any](list func() ([]T, error)) ([]T, error) {
	var err error
	for range dumpTries {
		var out []T
		if out, err = list(); err == nil {
			return out, nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return nil, err
}

func (k *linuxKernel) Links() ([]Link, error) {
	ls, err := dump(netlink.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	out := make([]Link, len(ls))
	for i, l := range ls {
		out[i] = linkOf(l)
	}
	return out, nil
}

func linkOf(l netlink.Link) Link {
	a := l.Attrs()
	return Link{Name: a.Name, Index: a.Index, Kind: l.Type(), Alias: a.Alias, MTU: a.MTU, MAC: a.HardwareAddr,
		Up: a.Flags&net.FlagUp != 0, Master: a.MasterIndex, Peer: a.ParentIndex, PeerNS: a.NetNsID}
}

// linkErr translates netlink's "not found" into the kernel's ENODEV.
func linkErr(name string, err error) error {
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return fmt.Errorf("link %s: %w", name, syscall.ENODEV)
	}
	return fmt.Errorf("link %s: %w", name, err)
}

func (k *linuxKernel) LinkByName(name string) (Link, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return Link{}, linkErr(name, err)
	}
	return linkOf(l), nil
}

func (k *linuxKernel) Index(name string) (int, error) { return k.sock.ifIndex(name) }

func (k *linuxKernel) AddBridge(name string, mac net.HardwareAddr) error {
	la := netlink.NewLinkAttrs()
	la.Name, la.HardwareAddr = name, mac
	return netlink.LinkAdd(&netlink.Bridge{LinkAttrs: la})
}

func (k *linuxKernel) AddVeth(host, peer string, mtu, master int, ns Netns) error {
	lns, ok := ns.(*linuxNetns)
	if !ok {
		return fmt.Errorf("veth %s: %T is not a namespace of this kernel", host, ns)
	}
	return createVeth(host, peer, mtu, master, lns.fd)
}

func (k *linuxKernel) DelLink(l Link) error { return delLink(l) }

func (k *linuxKernel) SetAlias(name, alias string) error { return setAlias(name, alias) }

// dev is a link named by its index only (what the netlink package's
// setters read of it).
func dev(index int) netlink.Link {
	return &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: index}}
}

func (k *linuxKernel) SetMTU(index, mtu int) error { return netlink.LinkSetMTU(dev(index), mtu) }
func (k *linuxKernel) SetMAC(index int, mac net.HardwareAddr) error {
	return netlink.LinkSetHardwareAddr(dev(index), mac)
}
func (k *linuxKernel) SetUp(index int) error { return netlink.LinkSetUp(dev(index)) }
func (k *linuxKernel) SetMaster(index, master int) error {
	return netlink.LinkSetMasterByIndex(dev(index), master)
}

func (k *linuxKernel) Addrs(index int) ([]netip.Prefix, error) { return addrs(netlink.AddrList, index) }

func addrs(list func(netlink.Link, int) ([]netlink.Addr, error), index int) ([]netip.Prefix, error) {
	as, err := dump(func() ([]netlink.Addr, error) { return list(dev(index), netlink.FAMILY_ALL) })
	if err != nil {
		return nil, err
	}
	out := make([]netip.Prefix, 0, len(as))
	for _, a := range as {
		if p, ok := netconv.Prefix(a.IPNet); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

func addrOf(p netip.Prefix, noDAD bool) *netlink.Addr {
	a := &netlink.Addr{IPNet: netconv.IPNet(p)}
	if noDAD {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

func (k *linuxKernel) ReplaceAddr(index int, p netip.Prefix, noDAD bool) error {
	return netlink.AddrReplace(dev(index), addrOf(p, noDAD))
}

func (k *linuxKernel) DelAddr(index int, p netip.Prefix) error {
	return netlink.AddrDel(dev(index), addrOf(p, false))
}

func routeOf(r Route) *netlink.Route {
	nr := &netlink.Route{LinkIndex: r.Link, Dst: netconv.IPNet(r.Dst), Protocol: netlink.RouteProtocol(r.Protocol)}
	if r.Gw.IsValid() {
		nr.Gw = r.Gw.AsSlice()
	}
	if r.Src.IsValid() {
		nr.Src = r.Src.AsSlice()
	}
	if r.OnLink {
		nr.Scope = netlink.SCOPE_LINK
	}
	return nr
}

func (k *linuxKernel) ReplaceRoute(r Route) error { return netlink.RouteReplace(routeOf(r)) }

func (k *linuxKernel) Announce(bridge int, mac net.HardwareAddr, ip netip.Addr) error {
	return k.sock.announce(bridge, mac, ip)
}

func (k *linuxKernel) WriteSysctl(path, value string) error {
	return os.WriteFile("/proc/sys/"+path, []byte(value), 0o644)
}

func (k *linuxKernel) NetnsInode(pid uint32) (uint64, error) {
	var st unix.Stat_t
	path := fmt.Sprintf("/proc/%d/ns/net", pid)
	if err := unix.Stat(path, &st); err != nil {
		return 0, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return st.Ino, nil
}

func (k *linuxKernel) OpenNetns(pid uint32) (Netns, error) {
	path := fmt.Sprintf("/proc/%d/ns/net", pid)
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(ns), &st); err != nil {
		ns.Close()
		return nil, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	n := &linuxNetns{fd: ns, inode: st.Ino, done: make(chan struct{})}
	// A netlink socket in the container takes two namespace switches of
	// an OS thread (about 0.1 ms): it is made while the caller goes on
	// (creating the pair into the namespace, say).
	go n.open()
	return n, nil
}

func (k *linuxKernel) Close() error { return errors.Join(k.sock.close(), k.peers.close()) }

// Peer reads the peer of a veth through the node's namespace: a link
// request and an address dump, each with the peer's namespace as target
// (IFLA_TARGET_NETNSID, IFA_TARGET_NETNSID), on one netlink socket kept
// open in the node's namespace. No thread enters the container and no
// descriptor is opened per look: a periodic check over hundreds of
// containers stays a few ms.
func (k *linuxKernel) Peer(host Link) (Link, []netip.Prefix, error) {
	if host.Peer == 0 {
		return Link{}, nil, fmt.Errorf("link %s: no peer: %w", host.Name, syscall.ENODEV)
	}
	socks, err := k.peers.sockets()
	if err != nil {
		return Link{}, nil, err
	}
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(host.Peer)
	msgs, err := askAboutPeer(socks, host, nl.NewNetlinkRequest(unix.RTM_GETLINK, 0), msg, unix.IFLA_TARGET_NETNSID, unix.RTM_NEWLINK)
	if err == nil && len(msgs) == 0 {
		err = syscall.ENODEV
	}
	if err != nil {
		return Link{}, nil, fmt.Errorf("peer of %s: %w", host.Name, err)
	}
	pl, err := netlink.LinkDeserialize(nil, msgs[0])
	if err != nil {
		return Link{}, nil, fmt.Errorf("peer of %s: %w", host.Name, err)
	}
	peer := linkOf(pl)
	addrs, err := dump(func() ([]netip.Prefix, error) { return k.peerAddrs(socks, host) })
	if err != nil {
		return Link{}, nil, fmt.Errorf("addresses of the peer of %s: %w", host.Name, err)
	}
	return peer, addrs, nil
}

// askAboutPeer sends req, with msg (which names the peer's index), on the
// node's peer socket, with the peer's namespace as target (the attribute
// nsAttr) when it is another, and returns the answers of type answer.
func askAboutPeer(socks map[int]*nl.SocketHandle, host Link, req *nl.NetlinkRequest, msg nl.NetlinkRequestData, nsAttr int, answer uint16) ([][]byte, error) {
	req.AddData(msg)
	if host.PeerNS >= 0 {
		req.AddData(nl.NewRtAttr(nsAttr, nl.Uint32Attr(uint32(host.PeerNS))))
	}
	req.Sockets = socks
	return req.Execute(unix.NETLINK_ROUTE, answer)
}

func (k *linuxKernel) peerAddrs(socks map[int]*nl.SocketHandle, host Link) ([]netip.Prefix, error) {
	// Strict checking (the socket's) makes the kernel filter by index and
	// honour the target namespace of a dump.
	msg := nl.NewIfAddrmsg(unix.AF_UNSPEC)
	msg.Index = uint32(host.Peer)
	msgs, err := askAboutPeer(socks, host, nl.NewNetlinkRequest(unix.RTM_GETADDR, unix.NLM_F_DUMP), msg, unix.IFA_TARGET_NETNSID, unix.RTM_NEWADDR)
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, m := range msgs {
		if len(m) < unix.SizeofIfAddrmsg {
			continue
		}
		am := nl.DeserializeIfAddrmsg(m)
		if int(am.Index) != host.Peer {
			continue
		}
		attrs, err := nl.ParseRouteAttr(m[unix.SizeofIfAddrmsg:])
		if err != nil {
			return nil, err
		}
		var local, addr []byte
		for _, a := range attrs {
			switch a.Attr.Type {
			case unix.IFA_LOCAL:
				local = a.Value
			case unix.IFA_ADDRESS:
				addr = a.Value
			}
		}
		if local != nil {
			addr = local
		}
		if ip, ok := netip.AddrFromSlice(addr); ok {
			out = append(out, netip.PrefixFrom(ip.Unmap(), int(am.Prefixlen)))
		}
	}
	return out, nil
}

// peerSocket is a NETLINK_ROUTE socket in the node's namespace with strict
// checking, opened on first use (a failed open is tried again at the next
// use), shared by the looks at peers.
type peerSocket struct {
	mu sync.Mutex
	sh *nl.SocketHandle
}

func (p *peerSocket) sockets() (map[int]*nl.SocketHandle, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sh == nil {
		s, err := nl.GetNetlinkSocketAt(netns.None(), netns.None(), unix.NETLINK_ROUTE)
		if err != nil {
			return nil, fmt.Errorf("the node's netlink socket: %w", err)
		}
		if err := unix.SetsockoptInt(s.GetFd(), unix.SOL_NETLINK, unix.NETLINK_GET_STRICT_CHK, 1); err != nil {
			s.Close()
			return nil, fmt.Errorf("the node's netlink socket: strict checking: %w", err)
		}
		p.sh = &nl.SocketHandle{Socket: s}
	}
	return map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: p.sh}, nil
}

func (p *peerSocket) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sh != nil {
		p.sh.Close()
		p.sh = nil
	}
	return nil
}

// linuxNetns is an open network namespace and a netlink handle in it,
// being made by another goroutine until done is closed.
type linuxNetns struct {
	fd    netns.NsHandle
	inode uint64

	done chan struct{}
	h    *netlink.Handle
	err  error

	closeOnce sync.Once
}

// open makes the handle: a NETLINK_ROUTE socket opened by a thread moved
// into the namespace and back. (netlink.NewHandleAt opens one socket per
// netlink family it supports, three, each with its own two switches, and
// leaks those it made when a later one fails; and it hands the thread
// back to the runtime even when it could not move it back.)
func (n *linuxNetns) open() {
	defer close(n.done)
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		n.err = fmt.Errorf("this thread's network namespace: %w", err)
		return
	}
	defer orig.Close()
	if err := netns.Set(n.fd); err != nil {
		runtime.UnlockOSThread()
		n.err = fmt.Errorf("enter the namespace: %w", err)
		return
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if serr := netns.Set(orig); serr != nil {
		// The thread stays locked: the runtime ends it with this
		// goroutine, so no goroutine ever runs in the container.
		if h != nil {
			h.Close()
		}
		n.err = fmt.Errorf("leave the namespace: %w", serr)
		return
	}
	runtime.UnlockOSThread()
	n.h, n.err = h, err
}

func (n *linuxNetns) handle() (*netlink.Handle, error) {
	<-n.done
	if n.err != nil {
		return nil, fmt.Errorf("netlink in the container: %w", n.err)
	}
	return n.h, nil
}

func (n *linuxNetns) Inode() uint64 { return n.inode }

// Close waits for the handle (the namespace must stay open until it is
// made), closes it, then the namespace.
func (n *linuxNetns) Close() error {
	var err error
	n.closeOnce.Do(func() {
		<-n.done
		if n.h != nil {
			n.h.Close()
		}
		err = n.fd.Close()
	})
	return err
}

func (n *linuxNetns) LinkByName(name string) (Link, error) {
	h, err := n.handle()
	if err != nil {
		return Link{}, err
	}
	l, err := h.LinkByName(name)
	if err != nil {
		return Link{}, linkErr(name, err)
	}
	return linkOf(l), nil
}

func (n *linuxNetns) Addrs(index int) ([]netip.Prefix, error) {
	h, err := n.handle()
	if err != nil {
		return nil, err
	}
	return addrs(h.AddrList, index)
}

func (n *linuxNetns) ReplaceAddr(index int, p netip.Prefix) error {
	h, err := n.handle()
	if err != nil {
		return err
	}
	return h.AddrReplace(dev(index), addrOf(p, false))
}

func (n *linuxNetns) DelAddr(index int, p netip.Prefix) error {
	h, err := n.handle()
	if err != nil {
		return err
	}
	return h.AddrDel(dev(index), addrOf(p, false))
}

func (n *linuxNetns) SetUp(index int) error {
	h, err := n.handle()
	if err != nil {
		return err
	}
	return h.LinkSetUp(dev(index))
}

func (n *linuxNetns) SetAlias(index int, alias string) error {
	h, err := n.handle()
	if err != nil {
		return err
	}
	return h.LinkSetAlias(dev(index), alias)
}

func (n *linuxNetns) ReplaceRoute(r Route) error {
	h, err := n.handle()
	if err != nil {
		return err
	}
	return h.RouteReplace(routeOf(r))
}

// createVeth makes a veth pair in one request: host end named host, up, on
// the bridge master (0: none), and its peer named peer, down, made directly
// in the container's namespace; both with the MTU. (The netlink package's
// LinkAdd takes three more round trips: it looks the link up again, sets
// the master afterwards, and the host end needs bringing up.)
func createVeth(host, peer string, mtu, master int, ns netns.NsHandle) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Change, msg.Flags = unix.IFF_UP, unix.IFF_UP
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(host)))
	req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(mtu))))
	if master != 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(master))))
	}
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("veth"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	p := data.AddRtAttr(nl.VETH_INFO_PEER, nil)
	// The peer cannot come up in this request: the kernel configures it
	// before it is paired (veth_open answers ENOTCONN).
	nl.NewIfInfomsgChild(p, unix.AF_UNSPEC)
	p.AddRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(peer))
	p.AddRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(mtu)))
	p.AddRtAttr(unix.IFLA_NET_NS_FD, nl.Uint32Attr(uint32(ns)))
	req.AddData(info)
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// setAlias sets a link's alias, the link named rather than looked up.
func setAlias(name, alias string) error {
	req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFALIAS, []byte(alias)))
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// delLink deletes a link in one request: by index, or by name when l has
// none (the netlink package looks a name up first).
func delLink(l Link) error {
	req := nl.NewNetlinkRequest(unix.RTM_DELLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(l.Index)
	req.AddData(msg)
	if l.Index == 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(l.Name)))
	}
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}
