//go:build linux

package bridge

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
)

// The announcement is an ARP request (RFC 5227) whose sender and target
// address are both the container's, from the container's MAC.
func TestGratuitousARPPacket(t *testing.T) {
	mac, _ := net.ParseMAC("02:42:ac:11:00:02")
	got := garp(mac, netip.MustParseAddr("10.200.1.7"))
	want := []byte{
		0, 1, 8, 0, 6, 4, 0, 1, // Ethernet, IPv4, lengths, request
		0x02, 0x42, 0xac, 0x11, 0, 2, 10, 200, 1, 7, // sender
		0, 0, 0, 0, 0, 0, 10, 200, 1, 7, // target
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("garp = % x\nwant   % x", got, want)
	}
}
