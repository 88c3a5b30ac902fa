package bridge

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// announce tells the container's neighbours (the host and the containers
// on the bridge) that ip now lives at link's MAC: addresses are reused, and
// a neighbour still holding the previous container's MAC would send there
// until its entry expired (seconds). It sends a gratuitous ARP from the
// container's interface and drops the host's entry for ip on the bridge.
func announce(ns netns.NsHandle, link netlink.Link, ip netip.Addr, bridgeIndex int) error {
	if !ip.Is4() {
		return nil // IPv6 neighbours re-resolve through NUD on their own
	}
	if bridgeIndex != 0 {
		n := &netlink.Neigh{LinkIndex: bridgeIndex, IP: ip.AsSlice(), Family: netlink.FAMILY_V4}
		if err := netlink.NeighDel(n); err != nil && !notFound(err) {
			// Not found is the common case; anything else is worth a note
			// in the error but must not fail the attach.
			_ = err
		}
	}
	mac := link.Attrs().HardwareAddr
	index := link.Attrs().Index
	return inNetns(ns, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(unix.ETH_P_ARP)))
		if err != nil {
			return fmt.Errorf("gratuitous ARP: socket: %w", err)
		}
		defer unix.Close(fd)
		bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
		sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: index, Halen: 6}
		copy(sa.Addr[:], bcast)
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
		if err := unix.Sendto(fd, pkt, 0, sa); err != nil {
			return fmt.Errorf("gratuitous ARP: send: %w", err)
		}
		return nil
	})
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
