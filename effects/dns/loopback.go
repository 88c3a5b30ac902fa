package dns

import (
	"errors"
	"net"
	"net/netip"
)

// loopbackKey is the problem reported while a loopback listen address
// cannot be reached because the namespace's loopback link is down.
const loopbackKey = "dns/loopback-down"

// errLoopbackDown: `ip netns add` makes a namespace whose lo is down, and
// a socket bound to 127.0.0.1 there binds (IP_FREEBIND) but no client can
// reach it. The daemon does not bring lo up itself: it changes no link it
// did not make (DESIGN.md, "Effects": ownership marks), and the operator's
// namespace is the operator's to set up; it says what to run instead.
var errLoopbackDown = errors.New("the loopback interface is down in the daemon's network namespace, so no client reaches the DNS server on its loopback address (a namespace made by `ip netns add` starts with lo down): run `ip link set lo up` in it")

// loopbackDown reports whether the namespace has a loopback interface
// that is down (false when it cannot tell).
func loopbackDown() bool {
	ifs, err := net.Interfaces()
	if err != nil {
		return false
	}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagLoopback != 0 {
			return ifc.Flags&net.FlagUp == 0
		}
	}
	return false
}

// checkLoopback warns (once per episode) and reports a problem while a
// loopback listen address is wanted and lo is down; down is loopbackDown
// (a field of the reconciler, so tests can fake it).
func (r *Reconciler) checkLoopback(want map[netip.AddrPort]bool) {
	var lo []string
	for ap := range want {
		if ap.Addr().IsLoopback() {
			lo = append(lo, ap.String())
		}
	}
	down := len(lo) > 0 && r.loDown()
	switch {
	case down && r.failing.Get(loopbackKey) == nil:
		r.log.Warn("dns: lo is down; the DNS server cannot be reached on its loopback addresses", "addrs", lo, "fix", "ip link set lo up")
		r.failing.Set(loopbackKey, errLoopbackDown)
	case !down && r.failing.Get(loopbackKey) != nil:
		r.log.Info("dns: lo is up again", "addrs", lo)
		r.failing.Set(loopbackKey, nil)
	}
}
