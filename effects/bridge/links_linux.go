package bridge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"github.com/zlayer/overlayd/effects"
	"github.com/zlayer/overlayd/effects/internal/netconv"
	"golang.org/x/sys/unix"
)

func notFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, syscall.ENODEV) || errors.Is(err, syscall.ENOENT)
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
		la.Name, la.MTU, la.HardwareAddr, la.Alias = b.Name, effects.MTU, b.MAC, bridgeAlias(b.Service)
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
	if a.MTU != effects.MTU {
		if err := netlink.LinkSetMTU(l, effects.MTU); err != nil {
			return fmt.Errorf("bridge %s: MTU: %w", b.Name, err)
		}
	}
	if a.HardwareAddr.String() != b.MAC.String() {
		if err := netlink.LinkSetHardwareAddr(l, b.MAC); err != nil {
			return fmt.Errorf("bridge %s: MAC: %w", b.Name, err)
		}
	}
	if err := netlink.AddrReplace(l, &netlink.Addr{IPNet: netconv.IPNet(b.Gateway)}); err != nil {
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
func ensureAttachment(a *Attachment, node *nodeSocket) (err error) {
	ns, err := openNetns(a)
	if err != nil {
		return err
	}
	defer ns.Close()
	// A netlink socket in the container takes two namespace switches of
	// an OS thread (about 0.1 ms): it is made while the pair is created.
	h := openHandle(ns)
	defer h.close()
	br, err := node.ifIndex(a.Bridge)
	if err != nil {
		return step("bridge", fmt.Errorf("service bridge: %w", err))
	}
	var created []string
	defer func() {
		if err != nil {
			for _, name := range created {
				deleteLink(name)
			}
		}
	}()
	if err := ensureLeg(h, ns, a, LegService, br, &created, node); err != nil {
		return err
	}
	if a.GlobalIP.IsValid() {
		return ensureLeg(h, ns, a, LegGlobal, 0, &created, node)
	}
	if _, err := node.ifIndex(a.HostName(LegGlobal)); errors.Is(err, syscall.ENODEV) {
		return nil
	}
	return step("veth", deleteLink(a.HostName(LegGlobal)))
}

// asyncHandle is a netlink handle in a container's namespace, being made
// by another goroutine.
type asyncHandle struct {
	done chan struct{}
	h    *netlink.Handle
	err  error
}

func openHandle(ns netns.NsHandle) *asyncHandle {
	ah := &asyncHandle{done: make(chan struct{})}
	go func() {
		defer close(ah.done)
		ah.h, ah.err = netlink.NewHandleAt(ns)
	}()
	return ah
}

func (ah *asyncHandle) get() (*netlink.Handle, error) {
	<-ah.done
	if ah.err != nil {
		return nil, step("netns", fmt.Errorf("netlink in the container: %w", ah.err))
	}
	return ah.h, nil
}

// close waits for the handle (the namespace must stay open until it is
// made) and closes it.
func (ah *asyncHandle) close() {
	<-ah.done
	if ah.h != nil {
		ah.h.Close()
	}
}

// ensureLeg makes one leg. A new pair costs few round trips to the kernel:
// one request creates both ends, the host end up on its bridge and the
// container end in its namespace (see createVeth); what an adopted leg may
// lack (mark, bridge, state, stale addresses) is only checked on adoption.
func ensureLeg(ah *asyncHandle, ns netns.NsHandle, a *Attachment, leg Leg, master int, created *[]string, node *nodeSocket) error {
	var side sideWork
	err := ensureLegWith(&side, ah, ns, a, leg, master, created, node)
	return side.wait(err)
}

// sideWork runs host-side steps next to the container-side ones.
type sideWork struct {
	wg   sync.WaitGroup
	mu   sync.Mutex
	errs []error
}

func (w *sideWork) run(fn func() error) {
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		if err := fn(); err != nil {
			w.mu.Lock()
			w.errs = append(w.errs, err)
			w.mu.Unlock()
		}
	}()
}

// wait waits for the side steps; err, the main path's error, comes first.
func (w *sideWork) wait(err error) error {
	w.wg.Wait()
	if err != nil {
		return err
	}
	if len(w.errs) > 0 {
		return w.errs[0]
	}
	return nil
}

func ensureLegWith(side *sideWork, ah *asyncHandle, ns netns.NsHandle, a *Attachment, leg Leg, master int, created *[]string, node *nodeSocket) error {
	hostName, ctrName := a.HostName(leg), "eth0"
	if leg == LegGlobal {
		ctrName = "eth1"
	}
	var host netlink.Link
	_, err := node.ifIndex(hostName)
	if errors.Is(err, syscall.ENODEV) {
		err = netlink.LinkNotFoundError{}
	} else {
		host, err = netlink.LinkByName(hostName)
	}
	if err == nil && host.Attrs().Alias != "" && host.Attrs().Alias != a.Alias(leg) {
		// Our name but another container's mark (a hash collision, or a
		// link of an older daemon): replace it.
		if err := deleteLink(hostName); err != nil {
			return step("veth", err)
		}
		host, err = nil, netlink.LinkNotFoundError{}
	}
	fresh := false
	switch {
	case err == nil:
		// Adopted. The kernel ignores an alias given at creation, so a
		// crash right after one leaves a link without its mark: set it.
		if host.Attrs().Alias != a.Alias(leg) {
			if err := netlink.LinkSetAlias(host, a.Alias(leg)); err != nil {
				return step("veth", fmt.Errorf("mark %s: %w", hostName, err))
			}
		}
	case !notFound(err):
		return step("veth", err)
	default:
		if err := createVeth(hostName, ctrName, master, ns); err != nil {
			if errors.Is(err, syscall.EEXIST) || errors.Is(err, syscall.EBUSY) {
				return step("veth", fmt.Errorf("the container already has an %s (or %s exists): %w", ctrName, hostName, err))
			}
			return step("veth", fmt.Errorf("create %s with %s in the container: %w", hostName, ctrName, err))
		}
		*created = append(*created, hostName)
		fresh = true
		// The mark goes on while the container side is set up: the two
		// touch different namespaces.
		side.run(func() error {
			if err := setAlias(hostName, a.Alias(leg)); err != nil {
				return step("veth", fmt.Errorf("mark %s: %w", hostName, err))
			}
			return nil
		})
	}
	// Container side.
	h, err := ah.get()
	if err != nil {
		return err
	}
	c, err := h.LinkByName(ctrName)
	if err != nil {
		return step(ctrName, fmt.Errorf("find %s in the container: %w", ctrName, err))
	}
	if leg == LegService {
		side.run(func() error {
			if err := node.announce(master, c.Attrs().HardwareAddr, a.IP.Addr()); err != nil {
				return step(ctrName, err)
			}
			return nil
		})
	}
	ip := a.IP
	if leg == LegGlobal {
		ip = netip.PrefixFrom(a.GlobalIP, a.GlobalIP.BitLen())
	}
	// Exactly one address: an adopted leg may still carry the one an
	// earlier attachment of this container had, which is free again and may
	// now belong to another container. The old one goes first: deleting a
	// subnet's primary address takes its secondaries with it.
	if !fresh {
		if addrs, err := h.AddrList(c, netlink.FAMILY_ALL); err == nil {
			for _, ad := range addrs {
				if p, ok := netconv.Prefix(ad.IPNet); ok && p != ip && !p.Addr().IsLinkLocalUnicast() {
					if err := h.AddrDel(c, &ad); err != nil && !notFound(err) && !errors.Is(err, syscall.EADDRNOTAVAIL) {
						return step(ctrName, fmt.Errorf("remove old address %s: %w", p, err))
					}
				}
			}
		}
	}
	if err := h.AddrReplace(c, &netlink.Addr{IPNet: netconv.IPNet(ip)}); err != nil {
		return step(ctrName, fmt.Errorf("address %s: %w", ip, err))
	}
	if c.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(c); err != nil {
			return step(ctrName, fmt.Errorf("up: %w", err))
		}
	}
	if leg == LegService {
		// lo is the first link of every namespace (index 1).
		lo := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "lo", Index: 1}}
		if err := h.LinkSetUp(lo); err != nil {
			return step("lo", err)
		}
		def := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if a.Gateway.Is6() {
			def = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		r := &netlink.Route{LinkIndex: c.Attrs().Index, Dst: netconv.IPNet(def), Gw: a.Gateway.AsSlice()}
		if err := h.RouteReplace(r); err != nil {
			return step("route", fmt.Errorf("default route via %s: %w", a.Gateway, err))
		}
	}
	// Host side.
	if !fresh {
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
	}
	if leg == LegService {
		return nil
	}
	if host == nil {
		// Fresh: the container end knows its peer's index (IFLA_LINK).
		idx := c.Attrs().ParentIndex
		if idx == 0 {
			if host, err = netlink.LinkByName(hostName); err != nil {
				return step("veth", err)
			}
		} else {
			host = &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hostName, Index: idx}}
		}
	}
	return wireGlobal(h, c, host, a)
}

// createVeth makes a veth pair in one request: host end named host, up, on
// the bridge master (0: none), and its peer named peer, down, made directly
// in the container's namespace; both with the overlay MTU. (The netlink
// package's LinkAdd takes three more round trips: it looks the link up
// again, sets the master afterwards, and the host end needs bringing up.)
func createVeth(host, peer string, master int, ns netns.NsHandle) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Change, msg.Flags = unix.IFF_UP, unix.IFF_UP
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(host)))
	req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(effects.MTU)))
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
	p.AddRtAttr(unix.IFLA_MTU, nl.Uint32Attr(effects.MTU))
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

// wireGlobal routes the cluster through eth1 in the container, and the
// container's global address to eth1's host end, with the node address as
// source. IPv4 uses proxy ARP on the host end; IPv6 a fixed link-local
// next hop (fe80::1) on it.
func wireGlobal(h *netlink.Handle, c, host netlink.Link, a *Attachment) error {
	r := &netlink.Route{LinkIndex: c.Attrs().Index, Dst: netconv.IPNet(a.Cluster), Scope: netlink.SCOPE_LINK}
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
		if err := netlink.AddrReplace(host, &netlink.Addr{IPNet: netconv.IPNet(netip.PrefixFrom(ll, 64)), Flags: unix.IFA_F_NODAD}); err != nil {
			return step("eth1", fmt.Errorf("link-local next hop on %s: %w", host.Attrs().Name, err))
		}
		r.Scope, r.Gw = netlink.SCOPE_UNIVERSE, ll.AsSlice()
	}
	if err := h.RouteReplace(r); err != nil {
		return step("route", fmt.Errorf("cluster %s via eth1: %w", a.Cluster, err))
	}
	hr := &netlink.Route{LinkIndex: host.Attrs().Index, Dst: netconv.HostNet(a.GlobalIP), Scope: netlink.SCOPE_LINK,
		Src: a.NodeIP.AsSlice(), Protocol: effects.RouteProtocol}
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
