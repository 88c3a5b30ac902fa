package bridge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func notFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, syscall.ENODEV) || errors.Is(err, syscall.ENOENT)
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func hostNet(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}
}

func writeSysctl(path, value string) error {
	return os.WriteFile(path, []byte(value), 0o644)
}

// ensureForwarding turns on forwarding for the families in use: bridged
// containers reach the overlay through this namespace's routing.
func ensureForwarding(v4, v6 bool) error {
	var errs []error
	if v4 {
		errs = append(errs, writeSysctl("/proc/sys/net/ipv4/ip_forward", "1"))
	}
	if v6 {
		errs = append(errs, writeSysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1"))
	}
	return errors.Join(errs...)
}

// ensureBridge creates the bridge or adopts the one that exists (a restart
// never deletes a live bridge): fixed MAC, MTU, ownership mark, gateway
// address, up.
func ensureBridge(b *Bridge) error {
	l, err := netlink.LinkByName(b.Name)
	switch {
	case err == nil:
		if l.Type() != "bridge" {
			return fmt.Errorf("bridge %s: a %s link of that name is in the way", b.Name, l.Type())
		}
	case notFound(err):
		la := netlink.NewLinkAttrs()
		la.Name, la.MTU, la.HardwareAddr, la.Alias = b.Name, MTU, b.MAC, bridgeAlias(b.Service)
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("bridge %s: create: %w", b.Name, err)
		}
		if l, err = netlink.LinkByName(b.Name); err != nil {
			return fmt.Errorf("bridge %s: %w", b.Name, err)
		}
	default:
		return fmt.Errorf("bridge %s: %w", b.Name, err)
	}
	a := l.Attrs()
	if a.Alias != bridgeAlias(b.Service) {
		if err := netlink.LinkSetAlias(l, bridgeAlias(b.Service)); err != nil {
			return fmt.Errorf("bridge %s: mark: %w", b.Name, err)
		}
	}
	if a.MTU != MTU {
		if err := netlink.LinkSetMTU(l, MTU); err != nil {
			return fmt.Errorf("bridge %s: MTU: %w", b.Name, err)
		}
	}
	if a.HardwareAddr.String() != b.MAC.String() {
		if err := netlink.LinkSetHardwareAddr(l, b.MAC); err != nil {
			return fmt.Errorf("bridge %s: MAC: %w", b.Name, err)
		}
	}
	if err := netlink.AddrReplace(l, &netlink.Addr{IPNet: prefixNet(b.Gateway)}); err != nil {
		return fmt.Errorf("bridge %s: gateway %s: %w", b.Name, b.Gateway, err)
	}
	if a.Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(l); err != nil {
			return fmt.Errorf("bridge %s: up: %w", b.Name, err)
		}
	}
	return ensureForwarding(b.Gateway.Addr().Is4(), b.Gateway.Addr().Is6())
}

// deleteLink deletes a link by name; "not found" is success.
func deleteLink(name string) error {
	l, err := netlink.LinkByName(name)
	if notFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := netlink.LinkDel(l); err != nil && !notFound(err) {
		return err
	}
	return nil
}

// StepError says which step of wiring a container failed.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return e.Step + ": " + e.Err.Error() }
func (e *StepError) Unwrap() error { return e.Err }

func step(name string, err error) error {
	if err == nil {
		return nil
	}
	return &StepError{Step: name, Err: err}
}

// openNetns opens the container's network namespace and checks that it is
// still the one the attachment was made for.
func openNetns(a *Attachment) (netns.NsHandle, error) {
	ns, err := netns.GetFromPath(fmt.Sprintf("/proc/%d/ns/net", a.PID))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ESRCH) {
			return 0, step("netns", fmt.Errorf("process %d is gone", a.PID))
		}
		return 0, step("netns", fmt.Errorf("open the network namespace of process %d: %w", a.PID, err))
	}
	if a.NetnsInode != 0 {
		var st unix.Stat_t
		if err := unix.Fstat(int(ns), &st); err != nil {
			ns.Close()
			return 0, step("netns", err)
		}
		if st.Ino != a.NetnsInode {
			ns.Close()
			return 0, step("netns", fmt.Errorf("process %d now lives in another network namespace (inode %d, attached in %d)", a.PID, st.Ino, a.NetnsInode))
		}
	}
	return ns, nil
}

// ensureAttachment wires a container: eth0 on the service bridge and,
// when it joins the global overlay, eth1. It adopts legs that exist with
// the right mark. When a step fails, the legs this call created are deleted
// again and the error names the step.
func ensureAttachment(a *Attachment) (err error) {
	ns, err := openNetns(a)
	if err != nil {
		return err
	}
	defer ns.Close()
	br, err := netlink.LinkByName(a.Bridge)
	if err != nil {
		return step("bridge", fmt.Errorf("service bridge %s: %w", a.Bridge, err))
	}
	var created []string
	defer func() {
		if err != nil {
			for _, name := range created {
				deleteLink(name)
			}
		}
	}()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return step("netns", err)
	}
	defer h.Close()
	if err := ensureLeg(h, ns, a, LegService, br.Attrs().Index, &created); err != nil {
		return err
	}
	if a.GlobalIP.IsValid() {
		return ensureLeg(h, ns, a, LegGlobal, 0, &created)
	}
	return step("veth", deleteLink(a.HostName(LegGlobal)))
}

func ensureLeg(h *netlink.Handle, ns netns.NsHandle, a *Attachment, leg Leg, master int, created *[]string) error {
	hostName, ctrName := a.HostName(leg), "eth0"
	if leg == LegGlobal {
		ctrName = "eth1"
	}
	host, err := netlink.LinkByName(hostName)
	if err == nil && host.Attrs().Alias != "" && host.Attrs().Alias != a.Alias(leg) {
		// Our name but another container's mark (a hash collision, or a
		// link of an older daemon): replace it.
		if err := deleteLink(hostName); err != nil {
			return step("veth", err)
		}
		host, err = nil, netlink.LinkNotFoundError{}
	}
	if err != nil {
		if !notFound(err) {
			return step("veth", err)
		}
		la := netlink.NewLinkAttrs()
		la.Name, la.MTU, la.Alias, la.MasterIndex = hostName, MTU, a.Alias(leg), master
		veth := &netlink.Veth{LinkAttrs: la, PeerName: ctrName, PeerNamespace: netlink.NsFd(int(ns)), PeerMTU: MTU}
		if err := netlink.LinkAdd(veth); err != nil {
			if errors.Is(err, syscall.EEXIST) {
				return step("veth", fmt.Errorf("the container already has an %s (or %s exists): %w", ctrName, hostName, err))
			}
			return step("veth", fmt.Errorf("create %s with %s in the container: %w", hostName, ctrName, err))
		}
		*created = append(*created, hostName)
		if host, err = netlink.LinkByName(hostName); err != nil {
			return step("veth", err)
		}
	}
	// The kernel ignores an alias given at creation: set the mark now (and
	// on a link that lost it, for instance to a crash right after creation).
	if host.Attrs().Alias != a.Alias(leg) {
		if err := netlink.LinkSetAlias(host, a.Alias(leg)); err != nil {
			return step("veth", fmt.Errorf("mark %s: %w", hostName, err))
		}
	}
	// Container side.
	c, err := h.LinkByName(ctrName)
	if err != nil {
		return step(ctrName, fmt.Errorf("find %s in the container: %w", ctrName, err))
	}
	ip := a.IP
	if leg == LegGlobal {
		ip = netip.PrefixFrom(a.GlobalIP, a.GlobalIP.BitLen())
	}
	// Exactly one address: an adopted leg may still carry the one an
	// earlier attachment of this container had, which is free again and may
	// now belong to another container. The old one goes first: deleting a
	// subnet's primary address takes its secondaries with it.
	if addrs, err := h.AddrList(c, netlink.FAMILY_ALL); err == nil {
		for _, ad := range addrs {
			if p, ok := netipPrefixOf(ad.IPNet); ok && p != ip && !p.Addr().IsLinkLocalUnicast() {
				if err := h.AddrDel(c, &ad); err != nil && !notFound(err) && !errors.Is(err, syscall.EADDRNOTAVAIL) {
					return step(ctrName, fmt.Errorf("remove old address %s: %w", p, err))
				}
			}
		}
	}
	if err := h.AddrReplace(c, &netlink.Addr{IPNet: prefixNet(ip)}); err != nil {
		return step(ctrName, fmt.Errorf("address %s: %w", ip, err))
	}
	if err := h.LinkSetUp(c); err != nil {
		return step(ctrName, fmt.Errorf("up: %w", err))
	}
	if leg == LegService {
		if err := announce(ns, c, ip.Addr(), master); err != nil {
			return step(ctrName, err)
		}
	}
	if lo, err := h.LinkByName("lo"); err == nil {
		if err := h.LinkSetUp(lo); err != nil {
			return step("lo", err)
		}
	}
	if leg == LegService {
		def := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if a.Gateway.Is6() {
			def = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		r := &netlink.Route{LinkIndex: c.Attrs().Index, Dst: prefixNet(def), Gw: a.Gateway.AsSlice()}
		if err := h.RouteReplace(r); err != nil {
			return step("route", fmt.Errorf("default route via %s: %w", a.Gateway, err))
		}
	}
	// Host side.
	if host.Attrs().MasterIndex != master && master != 0 {
		if err := netlink.LinkSetMasterByIndex(host, master); err != nil {
			return step("bridge", fmt.Errorf("put %s on the bridge: %w", hostName, err))
		}
	}
	if host.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(host); err != nil {
			return step("veth", fmt.Errorf("%s up: %w", hostName, err))
		}
	}
	if leg == LegGlobal {
		if err := wireGlobal(h, c, host, a); err != nil {
			return err
		}
	}
	return nil
}

// wireGlobal routes the cluster through eth1 in the container, and the
// container's global address to eth1's host end, with the node address as
// source. IPv4 uses proxy ARP on the host end; IPv6 a fixed link-local
// next hop (fe80::1) on it.
func wireGlobal(h *netlink.Handle, c, host netlink.Link, a *Attachment) error {
	r := &netlink.Route{LinkIndex: c.Attrs().Index, Dst: prefixNet(a.Cluster), Scope: netlink.SCOPE_LINK}
	if a.GlobalIP.Is4() {
		name := host.Attrs().Name
		if err := writeSysctl(fmt.Sprintf("/proc/sys/net/ipv4/conf/%s/proxy_arp", name), "1"); err != nil {
			return step("eth1", fmt.Errorf("proxy ARP on %s: %w", name, err))
		}
		// Answer at once: the kernel otherwise delays proxied replies by up
		// to 0.8 s, and every new destination would wait for it.
		if err := writeSysctl(fmt.Sprintf("/proc/sys/net/ipv4/neigh/%s/proxy_delay", name), "0"); err != nil {
			return step("eth1", fmt.Errorf("proxy ARP delay on %s: %w", name, err))
		}
	} else {
		ll := netip.MustParseAddr("fe80::1")
		if err := netlink.AddrReplace(host, &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(ll, 64)), Flags: unix.IFA_F_NODAD}); err != nil {
			return step("eth1", fmt.Errorf("link-local next hop on %s: %w", host.Attrs().Name, err))
		}
		r.Scope, r.Gw = netlink.SCOPE_UNIVERSE, ll.AsSlice()
	}
	if err := h.RouteReplace(r); err != nil {
		return step("route", fmt.Errorf("cluster %s via eth1: %w", a.Cluster, err))
	}
	hr := &netlink.Route{LinkIndex: host.Attrs().Index, Dst: hostNet(a.GlobalIP), Scope: netlink.SCOPE_LINK,
		Src: a.NodeIP.AsSlice(), Protocol: RouteProtocol}
	if err := netlink.RouteReplace(hr); err != nil {
		// The node address may not be up yet (the WireGuard device comes
		// from another reconciler): route without a preferred source.
		hr.Src = nil
		if err := netlink.RouteReplace(hr); err != nil {
			return step("route", fmt.Errorf("host route to %s: %w", a.GlobalIP, err))
		}
	}
	return nil
}

// inNetns runs fn on an OS thread switched into ns. The thread is never
// switched back: it ends with its goroutine (a thread left in a foreign
// namespace must never return to the pool).
func inNetns(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the runtime discards the thread
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

func netipPrefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}
