package bridge

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// nodeSocket is a packet socket in the daemon's (the node's) namespace,
// open as long as the reconciler. It serves two cheap jobs on an attach's
// critical path:
//
//   - ifIndex looks a link up by name with an ioctl (a few µs; a netlink
//     lookup of a bridge costs about 100 µs, most of it the bridge's
//     attributes being serialised and parsed);
//   - announce sends gratuitous ARP for a container's address out of its
//     service bridge: the bridge floods the broadcast to every port, so the
//     other containers of the service replace a MAC they cached for the
//     address (it may have belonged to a container detached a moment ago),
//     and the node's own entry on the bridge is dropped so it re-resolves.
//
// A packet socket per attach, opened in the container, was the first
// design: closing a packet socket always waits for an RCU grace period
// (packet_release calls synchronize_net), 5-15 ms here, and opening one in
// the container needs an OS thread switched into its namespace.
type nodeSocket struct {
	mu sync.Mutex
	fd int // -1 until first use, and after a failed open or Close
}

func newNodeSocket() *nodeSocket { return &nodeSocket{fd: -1} }

// socket returns the open socket, opening it on first use. A failed open
// (EMFILE, say) is tried again at the next use: it is never kept as the
// answer for good.
func (an *nodeSocket) socket() (int, error) {
	an.mu.Lock()
	defer an.mu.Unlock()
	if an.fd < 0 {
		// Protocol 0: the socket only sends and is never hooked into the
		// receive path.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return -1, fmt.Errorf("the node's packet socket: %w", err)
		}
		an.fd = fd
	}
	return an.fd, nil
}

// close closes the socket; a later use opens it again.
func (an *nodeSocket) close() error {
	an.mu.Lock()
	defer an.mu.Unlock()
	if an.fd < 0 {
		return nil
	}
	err := unix.Close(an.fd)
	an.fd = -1
	return err
}

// ifIndex returns the index of the link called name in the node's
// namespace; an error wrapping ENODEV when there is none.
func (an *nodeSocket) ifIndex(name string) (int, error) {
	fd, err := an.socket()
	if err != nil {
		return 0, err
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, fmt.Errorf("link %s: %w", name, err)
	}
	return int(ifr.Uint32()), nil
}

// announce says ip is at mac, on the bridge with index bridgeIndex.
func (an *nodeSocket) announce(bridgeIndex int, mac net.HardwareAddr, ip netip.Addr) error {
	if !ip.Is4() || bridgeIndex == 0 {
		return nil // IPv6 neighbours re-resolve through NUD on their own
	}
	n := &netlink.Neigh{LinkIndex: bridgeIndex, IP: ip.AsSlice(), Family: netlink.FAMILY_V4}
	// Not found is the common case; any other failure must not fail the
	// attach either: the entry ages out on its own.
	_ = netlink.NeighDel(n)
	if len(mac) != 6 {
		return fmt.Errorf("gratuitous ARP: the container's MAC %v is not Ethernet", mac)
	}
	fd, err := an.socket()
	if err != nil {
		return fmt.Errorf("gratuitous ARP: socket: %w", err)
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: bridgeIndex, Halen: 6}
	copy(sa.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	if err := unix.Sendto(fd, garp(mac, ip), 0, sa); err != nil {
		return fmt.Errorf("gratuitous ARP: send: %w", err)
	}
	return nil
}

// garp is an ARP request for ip from ip at mac (RFC 5227's announcement).
func garp(mac net.HardwareAddr, ip netip.Addr) []byte {
	pkt := make([]byte, 0, 28)
	pkt = binary.BigEndian.AppendUint16(pkt, 1)      // hardware: Ethernet
	pkt = binary.BigEndian.AppendUint16(pkt, 0x0800) // protocol: IPv4
	pkt = append(pkt, 6, 4)
	pkt = binary.BigEndian.AppendUint16(pkt, 1) // request
	b := ip.As4()
	pkt = append(pkt, mac...)
	pkt = append(pkt, b[:]...)
	pkt = append(pkt, make([]byte, 6)...)
	pkt = append(pkt, b[:]...)
	return pkt
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
