package wireguard

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"syscall"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Kernel is the host as the reconciler reaches it: TUN-backed WireGuard
// devices, and the links, addresses and routes they carry. The Linux
// implementation (the process's network namespace, netlink and
// wireguard-go) is what New uses; tests drive the reconciler through an
// in-memory one that injects errors per operation.
//
// Every error names the link or device and the operation; an error that
// says a link does not exist wraps ErrLinkNotFound, and no other error
// does.
type Kernel interface {
	// CreateDevice makes the TUN link name (MTU mtu, down) and a WireGuard
	// device on it that serves the standard UAPI socket when it can. On
	// error, everything it opened on the way is closed again.
	CreateDevice(name string, mtu int, log *slog.Logger) (Device, error)
	// Link reads the link named name.
	Link(name string) (Link, error)
	SetMTU(l Link, mtu int) error
	SetUp(l Link) error
	// DisableAddrGen stops the kernel from giving the link an IPv6
	// link-local address.
	DisableAddrGen(l Link) error
	Addrs(l Link) ([]netip.Prefix, error)
	ReplaceAddr(l Link, p netip.Prefix) error
	DelAddr(l Link, p netip.Prefix) error
	// Routes lists the routes through the link that carry
	// effects.RouteProtocol: the ones this package installs.
	Routes(l Link) ([]netip.Prefix, error)
	// ReplaceRoute installs a link-scoped route to p through the link,
	// with effects.RouteProtocol.
	ReplaceRoute(l Link, p netip.Prefix) error
	// DelRoute removes such a route; a route already gone is success.
	DelRoute(l Link, p netip.Prefix) error
}

// Link is what the reconciler reads of a kernel link.
type Link struct {
	Name  string
	Index int
	MTU   int
	Up    bool
}

// Device is one running WireGuard device (wireguard-go's device.Device on
// Linux). Its methods are safe to call concurrently; none may be called
// after Close.
type Device interface {
	// IpcSet applies UAPI "set" lines (https://www.wireguard.com/xplatform/).
	// Lines before a failing one stay applied.
	IpcSet(uapi string) error
	// IpcGet answers a UAPI "get".
	IpcGet() (string, error)
	// Up starts the device (its UDP socket, its peers).
	Up() error
	// Handshake makes the device initiate a handshake with the peer now,
	// without waiting for it; an unknown peer is ignored.
	Handshake(pub wgtypes.Key)
	// Close stops the device and closes its TUN (the kernel removes the
	// link and its routes) and its UAPI socket.
	Close()
}

// ErrLinkNotFound is wrapped by Kernel errors that say the link does not
// exist (netlink answered ENODEV or "not found"): only then is a device
// taken to have disappeared and made again.
var ErrLinkNotFound = errors.New("wireguard: no such link")

// PortError reports a listen port a device could not take. The device
// stays up with its address, peers and routes, and the next pass tries
// the port again.
type PortError struct {
	Device string
	Port   uint16
	Err    error // what setting the port returned
}

func (e *PortError) Error() string {
	if errors.Is(e.Err, syscall.EADDRINUSE) || (errAddrInUse != nil && errors.Is(e.Err, errAddrInUse)) {
		return fmt.Sprintf("wireguard: %s: listen port %d/udp is taken by another process: %v", e.Device, e.Port, syscall.EADDRINUSE)
	}
	return fmt.Sprintf("wireguard: %s: set listen port %d/udp: %v", e.Device, e.Port, e.Err)
}

func (e *PortError) Unwrap() error { return e.Err }

// errAddrInUse is the platform's own "address in use" when it is not
// syscall.EADDRINUSE (Windows: WSAEADDRINUSE); nil elsewhere.
var errAddrInUse error
