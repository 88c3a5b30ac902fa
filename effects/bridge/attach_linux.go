package bridge

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"syscall"

	"github.com/zlayer/overlayd/effects"
)

// StepError says which step of wiring a container failed.
type StepError = effects.StepError

func step(name string, err error) error { return effects.Step(name, err) }

// ctrName is the name of a leg's end in the container.
func ctrName(leg Leg) string {
	if leg == LegGlobal {
		return "eth1"
	}
	return "eth0"
}

// ensureAttachment wires a container: eth0 on the service bridge and,
// when it joins the global overlay, eth1. It adopts legs that exist with
// this owner's mark (or none: a crash before the marking). When a step
// fails, the pairs this call created are deleted again (nothing else is)
// and the error names the step. A container end marked by another owner
// (another journal, or a copy of this one at another home) refuses the
// attachment before anything in the container changes. spec, when known,
// is the attachment's bridge, made again if it is missing. Every path
// closes the namespace it opened.
func (r *Reconciler) ensureAttachment(a *Attachment, spec *Bridge) (err error) {
	ns, err := r.k.OpenNetns(a.PID)
	if err != nil {
		if processGone(err) {
			return step("netns", fmt.Errorf("process %d is gone", a.PID))
		}
		return step("netns", fmt.Errorf("open the network namespace of process %d: %w", a.PID, err))
	}
	defer func() {
		if cerr := ns.Close(); cerr != nil {
			r.log.Warn("close a container's namespace", "pid", a.PID, "err", cerr)
		}
	}()
	if a.NetnsInode != 0 && ns.Inode() != a.NetnsInode {
		return step("netns", fmt.Errorf("process %d now lives in another network namespace (inode %d, attached in %d)", a.PID, ns.Inode(), a.NetnsInode))
	}
	master, err := r.bridgeIndex(a, spec)
	if err != nil {
		return step("bridge", fmt.Errorf("service bridge %s: %w", a.Bridge, err))
	}
	var created []string
	defer func() {
		if err != nil {
			r.rollback(a, created)
		}
	}()
	if err := r.ensureLeg(ns, a, LegService, master, &created); err != nil {
		return err
	}
	if a.GlobalIP.IsValid() {
		return r.ensureLeg(ns, a, LegGlobal, 0, &created)
	}
	// No global leg wanted: one left by an earlier attachment goes.
	if _, err := r.k.Index(a.HostName(LegGlobal)); notFound(err) {
		return nil
	}
	return step("veth", r.deleteOwnLink(a.HostName(LegGlobal), a))
}

// rollback deletes the pairs a failed attach created (deleting the host
// end deletes the container's too, with their addresses and routes).
func (r *Reconciler) rollback(a *Attachment, created []string) {
	for _, name := range created {
		if err := r.k.DelLink(Link{Name: name}); err != nil && !notFound(err) {
			r.log.Warn("undo a failed attach: delete a link it made", "handle", a.Key, "link", name, "err", err)
		}
	}
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

// ensureLeg makes one leg. A new pair costs few round trips to the kernel:
// one request creates both ends, the host end up on its bridge and the
// container end in its namespace (Kernel.AddVeth); what an adopted leg may
// lack (marks, bridge, state, stale addresses) is only checked on adoption.
func (r *Reconciler) ensureLeg(ns Netns, a *Attachment, leg Leg, master int, created *[]string) error {
	var side sideWork
	err := r.ensureLegWith(&side, ns, a, leg, master, created)
	return side.wait(err)
}

// hostEnd looks a leg's host end up: found, absent (ok false), or an
// error that says neither.
func (r *Reconciler) hostEnd(name string) (l Link, ok bool, err error) {
	// The ioctl answers "absent" in a few µs: the common case of a fresh
	// attach pays no netlink lookup.
	if _, err := r.k.Index(name); notFound(err) {
		return Link{}, false, nil
	}
	l, err = r.k.LinkByName(name)
	if notFound(err) {
		return Link{}, false, nil
	}
	return l, err == nil, err
}

func (r *Reconciler) ensureLegWith(side *sideWork, ns Netns, a *Attachment, leg Leg, master int, created *[]string) error {
	hostName, cname := a.HostName(leg), ctrName(leg)
	hostMark, ctrMark := r.marks.host(a, leg), r.marks.ctr(a, leg)
	host, exists, err := r.hostEnd(hostName)
	if err != nil {
		return step("veth", err)
	}
	if exists {
		v, m := r.marks.judge(host.Alias)
		switch {
		case v == foreign || v == alien:
			return step("veth", inTheWay(hostName, host.Alias, v, m))
		case host.Kind != "veth":
			return step("veth", fmt.Errorf("a %s link called %s is in the way", host.Kind, hostName))
		case v == own && (m.kind != kindAttach || m.id != a.ID() || m.leg != leg):
			// Our name and our mark, but another attachment's (an earlier
			// incarnation, or a hash collision): replace it.
			if err := r.k.DelLink(host); err != nil && !notFound(err) {
				return step("veth", fmt.Errorf("replace %s (%s): %w", hostName, host.Alias, err))
			}
			exists = false
		}
	}
	fresh := !exists
	var c Link
	if fresh {
		if err := r.k.AddVeth(hostName, cname, effects.MTU, master, ns); err != nil {
			if errors.Is(err, syscall.EEXIST) || errors.Is(err, syscall.EBUSY) {
				// Nothing was made. Whose is what is in the way?
				if c, lerr := ns.LinkByName(cname); lerr == nil {
					if v, m := r.marks.judge(c.Alias); v == foreign {
						return step(cname, fmt.Errorf("the container's %s: %w", cname, inTheWay(cname, c.Alias, v, m)))
					}
				}
				return step("veth", fmt.Errorf("the container already has an %s (or %s exists): %w", cname, hostName, err))
			}
			return step("veth", fmt.Errorf("create %s with %s in the container: %w", hostName, cname, err))
		}
		*created = append(*created, hostName)
		// A crash here leaves a pair without marks: the next pass adopts
		// it (its name is wanted) or removes it (an unmarked veth with one
		// of our names that nothing wants).
		effects.Hit("bridge/after-veth-create")
		// The host end's mark goes on while the container side is set
		// up: the two touch different namespaces.
		side.run(func() error {
			if err := r.k.SetAlias(hostName, hostMark); err != nil {
				return step("veth", fmt.Errorf("mark %s: %w", hostName, err))
			}
			return nil
		})
		if c, err = ns.LinkByName(cname); err != nil {
			return step(cname, fmt.Errorf("find %s in the container: %w", cname, err))
		}
	} else {
		// Adopted: look at the container's end before changing anything.
		if c, err = ns.LinkByName(cname); err != nil {
			return step(cname, fmt.Errorf("find %s in the container: %w", cname, err))
		}
		if v, m := r.marks.judge(c.Alias); v == foreign {
			return step(cname, fmt.Errorf("the container's %s: %w", cname, inTheWay(cname, c.Alias, v, m)))
		}
		// The kernel ignores an alias given at creation, so a crash right
		// after one (or a daemon from before owners) leaves a link without
		// this owner's mark: set it.
		if host.Alias != hostMark {
			if err := r.k.SetAlias(hostName, hostMark); err != nil {
				return step("veth", fmt.Errorf("mark %s: %w", hostName, err))
			}
		}
	}
	if ctrMark != "" && c.Alias != ctrMark {
		if err := ns.SetAlias(c.Index, ctrMark); err != nil {
			return step(cname, fmt.Errorf("mark %s in the container: %w", cname, err))
		}
	}
	if leg == LegService {
		mac := c.MAC
		side.run(func() error {
			if err := r.k.Announce(master, mac, a.IP.Addr()); err != nil {
				return step(cname, err)
			}
			return nil
		})
	}
	ip := a.legIP(leg)
	// Exactly one address: an adopted leg may still carry the one an
	// earlier attachment of this container had, which is free again and may
	// now belong to another container. The old one goes first: deleting a
	// subnet's primary address takes its secondaries with it.
	if !fresh {
		have, err := ns.Addrs(c.Index)
		if err != nil {
			return step(cname, fmt.Errorf("addresses of %s: %w", cname, err))
		}
		for _, p := range have {
			if p != ip && !p.Addr().IsLinkLocalUnicast() {
				if err := ns.DelAddr(c.Index, p); err != nil && !notFound(err) && !errors.Is(err, syscall.EADDRNOTAVAIL) {
					return step(cname, fmt.Errorf("remove old address %s: %w", p, err))
				}
			}
		}
	}
	if err := ns.ReplaceAddr(c.Index, ip); err != nil {
		return step(cname, fmt.Errorf("address %s: %w", ip, err))
	}
	if !c.Up {
		if err := ns.SetUp(c.Index); err != nil {
			return step(cname, fmt.Errorf("up: %w", err))
		}
	}
	if leg == LegService {
		// lo is the first link of every namespace (index 1).
		if err := ns.SetUp(1); err != nil {
			return step("lo", err)
		}
		def := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if a.Gateway.Is6() {
			def = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		if err := ns.ReplaceRoute(Route{Link: c.Index, Dst: def, Gw: a.Gateway}); err != nil {
			return step("route", fmt.Errorf("default route via %s: %w", a.Gateway, err))
		}
	}
	// Host side.
	if !fresh {
		if host.Master != master && master != 0 {
			if err := r.k.SetMaster(host.Index, master); err != nil {
				return step("bridge", fmt.Errorf("put %s on the bridge: %w", hostName, err))
			}
		}
		if !host.Up {
			if err := r.k.SetUp(host.Index); err != nil {
				return step("veth", fmt.Errorf("%s up: %w", hostName, err))
			}
		}
	}
	if leg == LegService {
		return nil
	}
	if fresh {
		// The container end knows its peer's index (IFLA_LINK).
		host = Link{Name: hostName, Index: c.Peer}
		if host.Index == 0 {
			if host, err = r.k.LinkByName(hostName); err != nil {
				return step("veth", err)
			}
		}
	}
	return r.wireGlobal(ns, c, host, a)
}

// wireGlobal routes the cluster through eth1 in the container, and the
// container's global address to eth1's host end, with the node address as
// source. IPv4 uses proxy ARP on the host end; IPv6 a fixed link-local
// next hop (fe80::1) on it.
func (r *Reconciler) wireGlobal(ns Netns, c, host Link, a *Attachment) error {
	rt := Route{Link: c.Index, Dst: a.Cluster, OnLink: true}
	if a.GlobalIP.Is4() {
		name := host.Name
		if err := r.k.WriteSysctl("net/ipv4/conf/"+name+"/proxy_arp", "1"); err != nil {
			return step("eth1", fmt.Errorf("proxy ARP on %s: %w", name, err))
		}
		// Answer at once: the kernel otherwise delays proxied replies by up
		// to 0.8 s, and every new destination would wait for it.
		if err := r.k.WriteSysctl("net/ipv4/neigh/"+name+"/proxy_delay", "0"); err != nil {
			return step("eth1", fmt.Errorf("proxy ARP delay on %s: %w", name, err))
		}
	} else {
		ll := netip.MustParseAddr("fe80::1")
		if err := r.k.ReplaceAddr(host.Index, netip.PrefixFrom(ll, 64), true); err != nil {
			return step("eth1", fmt.Errorf("link-local next hop on %s: %w", host.Name, err))
		}
		rt.OnLink, rt.Gw = false, ll
	}
	if err := ns.ReplaceRoute(rt); err != nil {
		return step("route", fmt.Errorf("cluster %s via eth1: %w", a.Cluster, err))
	}
	hr := Route{Link: host.Index, Dst: a.legIP(LegGlobal), OnLink: true,
		Src: a.NodeIP, Protocol: effects.RouteProtocol}
	err := r.k.ReplaceRoute(hr)
	if errors.Is(err, syscall.EINVAL) && hr.Src.IsValid() {
		// The node address may not be up yet (the WireGuard device comes
		// from another reconciler): route without a preferred source.
		hr.Src = netip.Addr{}
		err = r.k.ReplaceRoute(hr)
	}
	if err != nil {
		return step("route", fmt.Errorf("host route to %s: %w", a.GlobalIP, err))
	}
	return nil
}
