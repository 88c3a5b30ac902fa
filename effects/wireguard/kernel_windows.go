package wireguard

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
)

// New returns a reconciler with no devices yet, whose devices are
// wireguard-go on Wintun adapters configured through the IP Helper API.
func New(keys Keys, log *slog.Logger) *Reconciler { return newReconciler(keys, log, &winKernel{}) }

// winKernel is the Kernel of a Windows host. A link is a network interface
// found by its alias (Wintun names the adapter's alias after the name
// CreateDevice is given); addresses, routes and the MTU go through the IP
// Helper API by interface index.
//
// What differs from Linux, and why:
//   - Routes are "ours" when they go through the link and their protocol is
//     MIB_IPPROTO_NETMGMT (how CreateIpForwardEntry2 records a static
//     route). Windows has no free protocol number like effects.RouteProtocol;
//     the routes Windows derives from the address (on-link subnet, host,
//     broadcast, multicast) carry MIB_IPPROTO_LOCAL and are not listed.
//     The adapter is the daemon's alone, so a static route on it that no
//     peer accounts for (one added by hand) is removed, as on Linux.
//   - The MTU lives on each family's IP interface (NlMtu): both are set.
//   - SetUp and DisableAddrGen do nothing: a Wintun adapter is connected
//     while wireguard-go holds its session, and an IPv6 link-local
//     address cannot be refused by an IP Helper call. The reconciler never
//     removes link-local addresses, so it does not fight the one Windows
//     makes.
type winKernel struct{}

var _ Kernel = (*winKernel)(nil)

func (k *winKernel) Link(name string) (Link, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return Link{}, fmt.Errorf("wireguard: link %s: list interfaces: %w", name, err)
	}
	for _, ifc := range ifs {
		if ifc.Name != name {
			continue
		}
		mtu, err := linkMTU(uint32(ifc.Index), ifc.MTU)
		if err != nil {
			return Link{}, fmt.Errorf("wireguard: link %s: %w", name, err)
		}
		return Link{Name: name, Index: ifc.Index, MTU: mtu, Up: ifc.Flags&net.FlagUp != 0}, nil
	}
	return Link{}, fmt.Errorf("%w: %s", ErrLinkNotFound, name)
}

// linkMTU is the MTU both IP interfaces of the index have; 0 when they
// differ (so that the reconciler sets it), fallback when neither exists.
func linkMTU(index uint32, fallback int) (int, error) {
	mtu := -1
	for _, fam := range []uint16{afInet, afInet6} {
		row, err := ipInterface(fam, index)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("read the %s interface: %w", famName(fam), err)
		}
		switch {
		case mtu < 0:
			mtu = int(row.NlMtu)
		case mtu != int(row.NlMtu):
			return 0, nil
		}
	}
	if mtu < 0 {
		return fallback, nil
	}
	return mtu, nil
}

func famName(fam uint16) string {
	if fam == afInet {
		return "IPv4"
	}
	return "IPv6"
}

// SetMTU sets NlMtu on the link's IPv4 and IPv6 interfaces (a family the
// interface does not have is skipped; having neither is an error).
func (k *winKernel) SetMTU(l Link, mtu int) error {
	set := 0
	for _, fam := range []uint16{afInet, afInet6} {
		row, err := ipInterface(fam, uint32(l.Index))
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("wireguard: link %s: read the %s interface: %w", l.Name, famName(fam), err)
		}
		set++
		if int(row.NlMtu) == mtu {
			continue
		}
		row.NlMtu = uint32(mtu)
		if err := setIPInterface(row); err != nil {
			return fmt.Errorf("wireguard: link %s: set the %s MTU to %d: %w", l.Name, famName(fam), mtu, err)
		}
	}
	if set == 0 {
		return fmt.Errorf("wireguard: link %s: no IPv4 or IPv6 interface to set the MTU on", l.Name)
	}
	return nil
}

func (k *winKernel) SetUp(Link) error          { return nil }
func (k *winKernel) DisableAddrGen(Link) error { return nil }

func (k *winKernel) Addrs(l Link) ([]netip.Prefix, error) {
	rows, err := unicastIPAddresses(afUnspec)
	if err != nil {
		return nil, fmt.Errorf("wireguard: link %s: list addresses: %w", l.Name, err)
	}
	var out []netip.Prefix
	for i := range rows {
		r := &rows[i]
		if r.InterfaceIndex != uint32(l.Index) {
			continue
		}
		if a, ok := r.Address.addr(); ok {
			out = append(out, netip.PrefixFrom(a, int(r.OnLinkPrefixLength)))
		}
	}
	return out, nil
}

func addrRow(l Link, p netip.Prefix) (*mibUnicastIPAddressRow, error) {
	row := &mibUnicastIPAddressRow{}
	if err := initUnicastIPAddressRow(row); err != nil {
		return nil, err
	}
	fillAddrRow(row, l, p)
	return row, nil
}

// fillAddrRow sets what this package asks of an address on top of the
// defaults InitializeUnicastIpAddressEntry put in row.
func fillAddrRow(row *mibUnicastIPAddressRow, l Link, p netip.Prefix) {
	row.Address.setAddr(p.Addr())
	row.InterfaceIndex = uint32(l.Index)
	row.OnLinkPrefixLength = uint8(p.Bits())
	row.DadState = ipDadStatePreferred
	row.ValidLifetime = infiniteLifetime
	row.PreferredLifetime = infiniteLifetime
}

// ReplaceAddr adds p; an address already there with another prefix
// length is changed in place (never removed and added again, so traffic
// from it sees no gap).
func (k *winKernel) ReplaceAddr(l Link, p netip.Prefix) error {
	row, err := addrRow(l, p)
	if err != nil {
		return fmt.Errorf("wireguard: link %s: address %s: %w", l.Name, p, err)
	}
	err = createUnicastIPAddressEntry(row)
	if isExists(err) {
		cur := *row
		if err = getUnicastIPAddressEntry(&cur); err == nil && cur.OnLinkPrefixLength != row.OnLinkPrefixLength {
			cur.OnLinkPrefixLength = row.OnLinkPrefixLength
			err = setUnicastIPAddressEntry(&cur)
		}
	}
	if err != nil {
		return fmt.Errorf("wireguard: link %s: address %s: %w", l.Name, p, err)
	}
	return nil
}

func (k *winKernel) DelAddr(l Link, p netip.Prefix) error {
	row, err := addrRow(l, p)
	if err == nil {
		err = deleteUnicastIPAddressEntry(row)
	}
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("wireguard: link %s: remove address %s: %w", l.Name, p, err)
	}
	return nil
}

func (k *winKernel) Routes(l Link) ([]netip.Prefix, error) {
	rows, err := ipForwardTable(afUnspec)
	if err != nil {
		return nil, fmt.Errorf("wireguard: link %s: list routes: %w", l.Name, err)
	}
	return ourRoutes(rows, uint32(l.Index)), nil
}

// ourRoutes picks the static routes through the interface index.
func ourRoutes(rows []mibIPForwardRow2, index uint32) []netip.Prefix {
	var out []netip.Prefix
	for i := range rows {
		r := &rows[i]
		if r.InterfaceIndex != index || r.Protocol != mibIPProtoNetMgmt {
			continue
		}
		if a, ok := r.DestinationPrefix.Prefix.addr(); ok {
			out = append(out, netip.PrefixFrom(a, int(r.DestinationPrefix.PrefixLength)))
		}
	}
	return out
}

// routeRow is an on-link route to p through l: the next hop is the
// family's unspecified address.
func routeRow(l Link, p netip.Prefix) (*mibIPForwardRow2, error) {
	row := &mibIPForwardRow2{}
	if err := initIPForwardRow2(row); err != nil {
		return nil, err
	}
	fillRouteRow(row, l, p)
	return row, nil
}

// fillRouteRow sets what this package asks of a route on top of the
// defaults InitializeIpForwardEntry put in row.
func fillRouteRow(row *mibIPForwardRow2, l Link, p netip.Prefix) {
	row.InterfaceIndex = uint32(l.Index)
	p = p.Masked()
	row.DestinationPrefix.Prefix.setAddr(p.Addr())
	row.DestinationPrefix.PrefixLength = uint8(p.Bits())
	if p.Addr().Is4() {
		row.NextHop.setAddr(netip.IPv4Unspecified())
	} else {
		row.NextHop.setAddr(netip.IPv6Unspecified())
	}
	row.Metric = 0 // the interface's metric alone
	row.Protocol = mibIPProtoNetMgmt
	row.ValidLifetime = infiniteLifetime
	row.PreferredLifetime = infiniteLifetime
}

// ReplaceRoute adds the route; one already there is success.
func (k *winKernel) ReplaceRoute(l Link, p netip.Prefix) error {
	row, err := routeRow(l, p)
	if err == nil {
		err = createIPForwardEntry2(row)
	}
	if err != nil && !isExists(err) {
		return fmt.Errorf("wireguard: link %s: route %s: %w", l.Name, p, err)
	}
	return nil
}

// DelRoute removes the route; one already gone is success.
func (k *winKernel) DelRoute(l Link, p netip.Prefix) error {
	row, err := routeRow(l, p)
	if err == nil {
		err = deleteIPForwardEntry2(row)
	}
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("wireguard: link %s: remove route %s: %w", l.Name, p, err)
	}
	return nil
}
