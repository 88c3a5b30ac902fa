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
package wireguard
