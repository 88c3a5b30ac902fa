package bridge

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
)

// Kernel is everything the reconciler asks of the node's network
// namespace (the daemon's own): its links, addresses, routes and sysctls,
// the liveness of container processes, and their namespaces. The real one
// is netlink (newKernel, Linux); tests use an in-memory one.
//
// Errors are the kernel's: a link that does not exist is an error wrapping
// syscall.ENODEV, a process that does not exist one wrapping syscall.ENOENT
// or syscall.ESRCH; any other error (EMFILE, ENOBUFS, EINTR ...) says
// nothing about what exists. Every method is safe to call concurrently.
// Nothing may be called after Close.
type Kernel interface {
	// Links lists every link. An error means the list is unknown, never
	// that there are no links.
	Links() ([]Link, error)
	// LinkByName returns one link.
	LinkByName(name string) (Link, error)
	// Index returns a link's index, cheaply (no attributes).
	Index(name string) (int, error)
	// AddBridge creates a bridge, down, with the kernel's default MTU. (An
	// MTU given at creation is not pinned: the bridge's then follows its
	// ports, and is 1500 without any. One set afterwards is.) It fails with
	// EEXIST when the name is taken.
	AddBridge(name string, mac net.HardwareAddr) error
	// AddVeth creates a veth pair in one request: host, up, on the bridge
	// with index master (0: none), in the node's namespace, and its peer,
	// down, directly in ns; both with the MTU mtu. It fails with EEXIST
	// (or EBUSY) when one of the names is taken.
	AddVeth(host, peer string, mtu, master int, ns Netns) error
	// DelLink deletes the link l names: by index when it has one, else by
	// name. Deleting one end of a veth pair deletes the other.
	DelLink(l Link) error
	// SetAlias sets the alias of the link called name.
	SetAlias(name, alias string) error
	SetMTU(index, mtu int) error
	SetMAC(index int, mac net.HardwareAddr) error
	SetUp(index int) error
	SetMaster(index, master int) error
	// Addrs lists the addresses of a link.
	Addrs(index int) ([]netip.Prefix, error)
	// Peer returns the other end of the veth host (a Link from Links or
	// LinkByName), in whatever namespace it is, and that end's addresses:
	// a look into a container from the node, without entering it.
	Peer(host Link) (Link, []netip.Prefix, error)
	// ReplaceAddr adds an address to a link, or updates it; noDAD skips
	// IPv6 duplicate address detection.
	ReplaceAddr(index int, p netip.Prefix, noDAD bool) error
	DelAddr(index int, p netip.Prefix) error
	ReplaceRoute(r Route) error
	// Announce tells the bridge with index bridge that ip is at mac
	// (gratuitous ARP, after dropping the node's own neighbour entry).
	Announce(bridge int, mac net.HardwareAddr, ip netip.Addr) error
	// WriteSysctl writes a value under /proc/sys (path relative to it,
	// e.g. "net/ipv4/ip_forward").
	WriteSysctl(path, value string) error
	// NetnsInode returns the inode of the network namespace process pid
	// lives in (the /proc/<pid> liveness check).
	NetnsInode(pid uint32) (uint64, error)
	// OpenNetns opens the network namespace of process pid. The caller
	// closes it.
	OpenNetns(pid uint32) (Netns, error)
	// Close releases what the kernel keeps open (sockets).
	Close() error
}

// Netns is a container's network namespace, open. Its methods act inside
// it. It is safe for concurrent use; nothing may be called after Close.
type Netns interface {
	// Inode is the namespace's inode (what an attachment records).
	Inode() uint64
	LinkByName(name string) (Link, error)
	Addrs(index int) ([]netip.Prefix, error)
	ReplaceAddr(index int, p netip.Prefix) error
	DelAddr(index int, p netip.Prefix) error
	SetUp(index int) error
	SetAlias(index int, alias string) error
	ReplaceRoute(r Route) error
	// Close closes the namespace and every socket opened in it.
	Close() error
}

// Link is what the reconciler reads of a network interface.
type Link struct {
	Name   string
	Index  int
	Kind   string // "bridge", "veth", "device" (no kind), ...
	Alias  string
	MTU    int
	MAC    net.HardwareAddr
	Up     bool // administratively up (IFF_UP)
	Master int  // index of the bridge it is a port of; 0: none
	// Peer is, for a veth, its peer's index (in the peer's namespace).
	Peer int
	// PeerNS names, for a veth whose peer is in another namespace, that
	// namespace to this kernel (the real one: its netnsid here; -1 none).
	PeerNS int
}

// Route is a route the reconciler installs.
type Route struct {
	Link int // output link's index
	Dst  netip.Prefix
	Gw   netip.Addr // invalid: none
	Src  netip.Addr // preferred source; invalid: none
	// OnLink gives the route scope link (a directly reachable
	// destination); otherwise it has scope universe.
	OnLink   bool
	Protocol int // rtnetlink protocol; 0: boot (the kernel's default)
}

// notFound reports whether err is the kernel's answer that a link does
// not exist. Nothing else is: EMFILE or any other failure says nothing
// about what exists.
func notFound(err error) bool { return errors.Is(err, syscall.ENODEV) }

// processGone reports whether err says that a process does not exist.
func processGone(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ESRCH)
}
