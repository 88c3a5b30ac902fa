//go:build linux

// Command vethbench wires containers by hand, the way a runtime without
// overlayd would, and prints how long each took (milliseconds, one line per
// container). It is the baseline of the attach benchmark.
//
//	vethbench -mode move   -pids 123,456    # create the pair here, then move the peer
//	vethbench -mode direct -pids 123,456    # create the peer directly in the container
//
// Each container gets eth0 with 10.99.<i/250>.<i%250+2>/16, up, lo up, a
// default route via 10.99.0.1, its host end up on a bridge (vbbr, made for
// the run), as the daemon does. Run it in the namespace that plays the
// node; it deletes what it made before it exits.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func main() {
	mode := flag.String("mode", "move", "move or direct")
	pids := flag.String("pids", "", "comma-separated container PIDs")
	flag.Parse()
	var made []string
	bla := netlink.NewLinkAttrs()
	bla.Name = "vbbr"
	if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: bla}); err != nil {
		fail(err)
	}
	made = append(made, "vbbr")
	br, err := netlink.LinkByName("vbbr")
	if err != nil {
		fail(err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		fail(err)
	}
	defer func() {
		for _, n := range made {
			if l, err := netlink.LinkByName(n); err == nil {
				netlink.LinkDel(l)
			}
		}
	}()
	for i, p := range strings.Split(*pids, ",") {
		pid, err := strconv.Atoi(p)
		if err != nil {
			fail(err)
		}
		host := fmt.Sprintf("vb%d", i)
		start := time.Now()
		if err := wire(*mode, pid, host, br.Attrs().Index, net.IPv4(10, 99, byte(i/250), byte(i%250+2))); err != nil {
			fail(err)
		}
		made = append(made, host)
		fmt.Printf("%.3f\n", float64(time.Since(start).Microseconds())/1000)
	}
}

func wire(mode string, pid int, host string, bridge int, ip net.IP) error {
	ns, err := netns.GetFromPid(pid)
	if err != nil {
		return err
	}
	defer ns.Close()
	la := netlink.NewLinkAttrs()
	la.Name, la.MTU, la.MasterIndex = host, 1420, bridge
	peer := "eth0"
	veth := &netlink.Veth{LinkAttrs: la, PeerName: peer, PeerMTU: 1420}
	if mode == "direct" {
		veth.PeerNamespace = netlink.NsFd(int(ns))
	} else {
		veth.PeerName = host + "p"
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return err
	}
	if mode != "direct" {
		p, err := netlink.LinkByName(host + "p")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetNsFd(p, int(ns)); err != nil {
			return err
		}
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	name := peer
	if mode != "direct" {
		name = host + "p"
	}
	c, err := h.LinkByName(name)
	if err != nil {
		return err
	}
	if mode != "direct" {
		if err := h.LinkSetName(c, "eth0"); err != nil {
			return err
		}
	}
	if err := h.AddrAdd(c, &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(16, 32)}}); err != nil {
		return err
	}
	if err := h.LinkSetUp(c); err != nil {
		return err
	}
	if lo, err := h.LinkByName("lo"); err == nil {
		h.LinkSetUp(lo)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: c.Attrs().Index, Gw: net.IPv4(10, 99, 0, 1)}); err != nil {
		return err
	}
	hl, err := netlink.LinkByName(host)
	if err != nil {
		return err
	}
	return netlink.LinkSetUp(hl)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "vethbench:", err)
	os.Exit(1)
}
