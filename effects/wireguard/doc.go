// Package wireguard makes the node's WireGuard devices match the projected
// state: one wireguard-go device on a TUN for the global overlay and one per
// dedicated service, each with its key, port, address, peers and a route for
// every AllowedIP.
//
// The reconciler diffs the desired configuration (Desired, a pure function
// of the state) against what it applied and updates peers in place through
// UAPI: a live peer is never removed and re-added, AllowedIPs are added and
// removed one by one ("allowed_ip=-prefix"), so traffic over an unchanged
// prefix never sees a gap. Devices are configured in process (IpcSet) and
// also serve the standard UAPI socket (/var/run/wireguard/<name>.sock) so
// that `wg show` works. Routes it installs carry protocol effects.RouteProtocol, so
// cleanup removes exactly what it added.
//
// # The kernel seam
//
// The reconciler reaches the host only through Kernel (links, addresses,
// routes, device creation) and Device (UAPI set and get, up, handshake,
// close). New uses the Linux implementation in the process's network
// namespace; the tests drive the same reconciler through an in-memory
// kernel that injects errors per operation.
//
// # Faults
//
//   - A device is taken to have disappeared, closed and made again, only
//     when the kernel answers that its link does not exist
//     (ErrLinkNotFound). Any other error reading it (EMFILE when
//     descriptors run out, ENOBUFS, …) keeps the device and fails the pass
//     for its key; the next pass tries again.
//   - Device creation closes, on every failure, what it opened: the
//     /dev/net/tun descriptor (opened and attached here, since
//     tun.CreateTUN leaks it when TUNSETIFF fails), the wireguard-go
//     device, the UAPI socket.
//   - A listen port another process holds is a *PortError
//     ("wireguard: zl-prod-42-g: listen port 51820/udp is taken by another
//     process: address already in use"). The device stays up with its
//     address, peers and routes; every pass tries the port again, and the
//     pass that gets it makes every peer with an endpoint handshake.
//   - Errors are effects.KeyErrors keyed by the state key of the object a
//     device serves: "global" for the global device, "service/<name>" for
//     a dedicated service's device. The runner keeps each until a pass
//     succeeds for its key; the daemon answers and reports from there.
package wireguard
