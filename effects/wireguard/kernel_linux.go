package wireguard

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/zlayer/overlayd/effects"
	"github.com/zlayer/overlayd/effects/internal/netconv"
)

// New returns a reconciler with no devices yet, working in the process's
// network namespace.
func New(keys Keys, log *slog.Logger) *Reconciler { return newReconciler(keys, log, &hostKernel{}) }

// hostKernel is the Kernel of the process's network namespace: netlink for
// links, addresses and routes, wireguard-go on a TUN for devices.
type hostKernel struct {
	// inject, when set (tests), is called after each step of device
	// creation that opened something ("tun-open", "tun-setiff",
	// "tun-wrap", "device", "uapi"); an error it returns fails the
	// creation there.
	inject func(step string) error
}

var _ Kernel = (*hostKernel)(nil)

func (k *hostKernel) step(name string) error {
	if k.inject == nil {
		return nil
	}
	return k.inject(name)
}

// linkErr translates a netlink error about link name: only an answer that
// says the link does not exist becomes ErrLinkNotFound.
func linkErr(name string, err error) error {
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("%w: %s", ErrLinkNotFound, name)
	}
	return fmt.Errorf("wireguard: link %s: %w", name, err)
}

func nlLink(l Link) netlink.Link {
	return &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: l.Name, Index: l.Index}}
}

func (k *hostKernel) Link(name string) (Link, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return Link{}, linkErr(name, err)
	}
	a := l.Attrs()
	return Link{Name: a.Name, Index: a.Index, MTU: a.MTU, Up: a.Flags&net.FlagUp != 0}, nil
}

func (k *hostKernel) SetMTU(l Link, mtu int) error { return netlink.LinkSetMTU(nlLink(l), mtu) }
func (k *hostKernel) SetUp(l Link) error           { return netlink.LinkSetUp(nlLink(l)) }

func (k *hostKernel) DisableAddrGen(l Link) error {
	return netlink.LinkSetIP6AddrGenMode(nlLink(l), 1) // IN6_ADDR_GEN_MODE_NONE
}

func (k *hostKernel) Addrs(l Link) ([]netip.Prefix, error) {
	addrs, err := netlink.AddrList(nlLink(l), netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, a := range addrs {
		if p, ok := netconv.Prefix(a.IPNet); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

func (k *hostKernel) ReplaceAddr(l Link, p netip.Prefix) error {
	return netlink.AddrReplace(nlLink(l), &netlink.Addr{IPNet: netconv.IPNet(p)})
}

func (k *hostKernel) DelAddr(l Link, p netip.Prefix) error {
	return netlink.AddrDel(nlLink(l), &netlink.Addr{IPNet: netconv.IPNet(p)})
}

func route(l Link, p netip.Prefix) *netlink.Route {
	return &netlink.Route{LinkIndex: l.Index, Dst: netconv.IPNet(p), Protocol: effects.RouteProtocol, Scope: netlink.SCOPE_LINK}
}

func (k *hostKernel) Routes(l Link) ([]netip.Prefix, error) {
	rs, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: l.Index, Protocol: effects.RouteProtocol},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, r := range rs {
		if p, ok := netconv.Prefix(r.Dst); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

func (k *hostKernel) ReplaceRoute(l Link, p netip.Prefix) error {
	return netlink.RouteReplace(route(l, p))
}

func (k *hostKernel) DelRoute(l Link, p netip.Prefix) error {
	if err := netlink.RouteDel(route(l, p)); err != nil && !errors.Is(err, unix.ESRCH) {
		return err
	}
	return nil
}
