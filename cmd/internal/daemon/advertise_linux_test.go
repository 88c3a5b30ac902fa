package daemon

import (
	"fmt"
	"github.com/zlayer/overlayd/tools/netlab"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// ipIn runs ip(8) with args, failing the test with its output.
func ipIn(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// inNetns runs fn on a thread moved into the named namespace
// (netlab.InNetns).
func inNetns(t *testing.T, name string, fn func()) {
	t.Helper()
	if err := netlab.InNetns("/run/netns/"+name, func() error { fn(); return nil }); err != nil {
		t.Fatal(err)
	}
}

// Without --advertise-address a guest is told the underlay address: the
// source of the route to the default gateway, not the first global
// address of an up interface (here a TUN like wireguard-go's named as the
// state's device, listed first, and a marked bridge-like one), and never
// an address inside an overlay prefix. Without a default route the
// fallback skips the daemon's links and the overlay's prefixes too. Runs
// in two network namespaces the test creates and deletes: "node" (the
// daemon's) and "gw" (the gateway at the other end of a veth).
func TestHostAddrIsTheUnderlay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, links and routes")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip(8) (iproute2)")
	}
	tag := fmt.Sprintf("%d", os.Getpid()%100000)
	node, gw := "fzadv-n"+tag, "fzadv-g"+tag
	for _, ns := range []string{node, gw} {
		ipIn(t, "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	// Made first, so they come first in the interface list: the global
	// device of the state (a TUN, as wireguard-go's) and a
	// bridge-like link with the daemon's mark.
	ipIn(t, "-n", node, "tuntap", "add", "zl-prod-1-g", "mode", "tun")
	ipIn(t, "-n", node, "addr", "add", "203.0.113.5/24", "dev", "zl-prod-1-g")
	ipIn(t, "-n", node, "link", "set", "zl-prod-1-g", "up")
	ipIn(t, "-n", node, "link", "add", "brlike", "type", "bridge")
	ipIn(t, "-n", node, "link", "set", "brlike", "alias", "zlayer-overlayd bridge web j=x")
	ipIn(t, "-n", node, "addr", "add", "203.0.114.1/24", "dev", "brlike")
	ipIn(t, "-n", node, "link", "set", "brlike", "up")
	// An ordinary link holding an overlay address (the cluster prefix).
	ipIn(t, "-n", node, "link", "add", "other", "type", "veth", "peer", "name", "other1")
	ipIn(t, "-n", node, "link", "set", "other1", "up")
	ipIn(t, "-n", node, "addr", "add", "10.200.0.9/24", "dev", "other")
	ipIn(t, "-n", node, "link", "set", "other", "up")
	// The underlay: a veth to the gateway, holding the default route,
	// with two addresses (the route's source is the second).
	ipIn(t, "-n", node, "link", "add", "uplink", "type", "veth", "peer", "name", "gwside", "netns", gw)
	ipIn(t, "-n", node, "addr", "add", "198.51.100.2/24", "dev", "uplink")
	ipIn(t, "-n", node, "addr", "add", "198.51.100.3/24", "dev", "uplink")
	ipIn(t, "-n", node, "link", "set", "uplink", "up")
	ipIn(t, "-n", gw, "addr", "add", "198.51.100.1/24", "dev", "gwside")
	ipIn(t, "-n", gw, "link", "set", "gwside", "up")

	owned := ownedNet{
		prefixes: []netip.Prefix{netip.MustParsePrefix("10.200.0.0/16")},
		links:    map[string]bool{"zl-prod-1-g": true},
	}
	check := func(what, want string) {
		t.Helper()
		var got netip.Addr
		inNetns(t, node, func() { got = hostAddr(owned) })
		if got.String() != want {
			t.Fatalf("%s: hostAddr %s, want %s", what, got, want)
		}
	}
	check("no default route (fallback)", "198.51.100.2")
	ipIn(t, "-n", node, "route", "add", "default", "via", "198.51.100.1", "dev", "uplink", "src", "198.51.100.3")
	check("default route with a source", "198.51.100.3")
	ipIn(t, "-n", node, "route", "replace", "default", "via", "198.51.100.1", "dev", "uplink")
	check("default route, source chosen by the kernel", "198.51.100.2")
	// The old rule's answer, for contrast: the first global address.
	var first netip.Addr
	inNetns(t, node, func() { first = firstGlobalAddr(ownedNet{}, nil) })
	if first.String() != "203.0.113.5" {
		t.Fatalf("setup: the first global address is %s, not the WireGuard-like device's", first)
	}
	// A default route through a link of the daemon's is not the underlay.
	ipIn(t, "-n", node, "route", "replace", "default", "dev", "zl-prod-1-g")
	check("default route through the daemon's device", "198.51.100.2")
	// IPv6 only: the v6 default route's source.
	ipIn(t, "-n", node, "route", "del", "default")
	ipIn(t, "-n", node, "-4", "addr", "flush", "dev", "uplink")
	ipIn(t, "-n", node, "addr", "add", "2001:db8:1::2/64", "dev", "uplink", "nodad")
	ipIn(t, "-n", gw, "addr", "add", "2001:db8:1::1/64", "dev", "gwside", "nodad")
	ipIn(t, "-n", node, "-6", "route", "add", "default", "via", "2001:db8:1::1", "dev", "uplink")
	check("IPv6 default route", "2001:db8:1::2")
}
