//go:build linux

package netlab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zlayer/overlayd/ipc"
)

// setNAT repeats the lab's setup_global_overlay with nat_enabled on or off.
func setNAT(t *testing.T, c *ipc.Client, on bool) {
	t.Helper()
	call(t, c, ipc.SetupGlobalOverlay{Deployment: "lab", InstanceID: "1", ClusterCIDR: "10.200.0.0/16", WgPort: Port, NatEnabled: on})
}

// nftList runs nft list args in the node and returns its output; a table
// that is gone fails the test, with nft's words.
func nftList(t *testing.T, nd *Node, args ...string) string {
	t.Helper()
	out, err := nd.Run(context.Background(), append([]string{"nft", "list"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func nftRuleset(t *testing.T, nd *Node) string {
	t.Helper()
	out, err := nd.Run(context.Background(), "nft", "list", "ruleset")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// udpSource sends one datagram from the namespace at from to to:port
// (opened in the namespace at toNS) and returns the source address the
// receiver saw.
func udpSource(t *testing.T, fromNS, toNS string, to netip.Addr) netip.Addr {
	t.Helper()
	var pc net.PacketConn
	if err := InNetns(toNS, func() error {
		var err error
		pc, err = net.ListenPacket("udp", net.JoinHostPort(to.String(), "9999"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var out net.Conn
	if err := InNetns(fromNS, func() error {
		var err error
		out, err = net.Dial("udp", net.JoinHostPort(to.String(), "9999"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	buf := make([]byte, 64)
	for i := 0; i < 20; i++ {
		out.Write([]byte("hello"))
		pc.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		_, from, err := pc.ReadFrom(buf)
		if err == nil {
			a, _ := netip.ParseAddrPort(from.String())
			return a.Addr()
		}
	}
	t.Fatalf("no datagram from %s reached %s", fromNS, to)
	return netip.Addr{}
}

// With nat_enabled a container reaches a host that plays the internet (it
// has no route into the overlay); with NAT off it cannot; container to
// container traffic across nodes keeps the sender's own address. The table
// holds each rule once after 100 nat_ticks, comes back within the check
// interval after `nft flush ruleset`, and is gone after teardown.
func TestNAT(t *testing.T) {
	l := newLab(t, 2, "--reconcile-interval", "1s")
	ctx := context.Background()
	world, err := l.AddHost(netip.MustParseAddr("172.31.0.200"))
	if err != nil {
		t.Fatal(err)
	}
	infos, err := l.Mesh(ctx, 25)
	if err != nil {
		t.Fatal(err)
	}
	setupServices(t, l, infos, ipc.ModeShared, "web")
	c0, c1 := client(t, l.Nodes[0], nil), client(t, l.Nodes[1], nil)
	a := newContainer(t, l)
	b := newContainer(t, l)
	// Service addresses only (no join_global): cross-node traffic leaves
	// through eth0, the bridge and the node, where masquerade could act.
	attach1 := func(c *ipc.Client, ctr *Container) netip.Addr {
		r := call(t, c, ipc.AttachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformLinuxPID, PID: uint32(ctr.PID)}, Service: "web"})
		return r.(ipc.Attached).IP.Addr
	}
	aIP, bIP := attach1(c0, a), attach1(c1, b)
	if rs := nftRuleset(t, l.Nodes[0]); strings.Contains(rs, "zlayer") {
		t.Fatalf("a table without nat_enabled:\n%s", rs)
	}
	ping := func() error {
		_, err := a.Run(ctx, "ping", "-n", "-c", "1", "-W", "1", world.Addr.String())
		return err
	}
	if ping() == nil {
		t.Fatal("the world answers a container without NAT: the test topology is wrong")
	}

	setNAT(t, c0, true)
	setNAT(t, c1, true)
	if err := ping(); err != nil {
		t.Fatalf("with nat_enabled the container does not reach the world: %v\n%s", err, nftRuleset(t, l.Nodes[0]))
	}
	// Across nodes, through the mesh: never masqueraded.
	if src := udpSource(t, a.NetnsPath(), b.NetnsPath(), bIP); src != aIP {
		t.Fatalf("node 1's container saw %s, want node 0's container %s", src, aIP)
	}
	if src := udpSource(t, b.NetnsPath(), a.NetnsPath(), aIP); src != bIP {
		t.Fatalf("node 0's container saw %s, want node 1's container %s", src, bIP)
	}
	// On one bridge (bridged traffic passes the ip hooks here): never
	// masqueraded either.
	a2 := newContainer(t, l)
	a2IP := attach1(c0, a2)
	if src := udpSource(t, a.NetnsPath(), a2.NetnsPath(), a2IP); src != aIP {
		t.Fatalf("a container on the same bridge saw %s, want %s", src, aIP)
	}
	// The world sees the node's underlay address.
	if src := udpSource(t, a.NetnsPath(), world.NetnsPath(), world.Addr); src != l.Nodes[0].Underlay {
		t.Fatalf("the world saw %s, want the node's %s", src, l.Nodes[0].Underlay)
	}

	for i := 0; i < 100; i++ {
		call(t, c0, ipc.NatTick{})
	}
	table, err := l.Nodes[0].Run(ctx, "nft", "list", "table", "inet", "zlayer_overlayd")
	if err != nil {
		t.Fatal(err)
	}
	for _, rule := range []string{"masquerade ipv4 leaving the overlay", "service bridges to the mesh", "the mesh to service bridges",
		"service bridges to the world (masqueraded)", "replies from the world to service bridges"} {
		if n := strings.Count(table, `comment "zlayer-overlayd: `+rule+`"`); n != 1 {
			t.Errorf("after 100 reconciles rule %q appears %d times", rule, n)
		}
	}
	if n := strings.Count(table, "\tchain "); n != 2 {
		t.Errorf("%d chains, want 2:\n%s", n, table)
	}

	// Someone flushes the whole ruleset, then deletes our table by hand:
	// each time it is back within the check interval (1 s here).
	back := func(what string, cmd ...string) {
		t.Helper()
		if _, err := l.Nodes[0].Run(ctx, cmd...); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		for !strings.Contains(nftRuleset(t, l.Nodes[0]), "zlayer_overlayd") {
			if time.Since(t0) > 3*time.Second {
				t.Fatalf("table not restored %v after %s\n%s", time.Since(t0), what, l.Nodes[0].Logs())
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("table restored %v after %s", time.Since(t0).Round(time.Millisecond), what)
	}
	back("nft flush ruleset", "nft", "flush", "ruleset")
	// Someone else's NAT table on the node (as Docker keeps one): it must
	// come through everything untouched, and it keeps the kernel's NAT
	// hooks registered after ours go (so translated flows outlive our
	// table unless the daemon removes them).
	for _, cmd := range [][]string{
		{"nft", "add", "table", "ip", "theirs"},
		{"nft", "add", "chain", "ip", "theirs", "post", "{ type nat hook postrouting priority 200; policy accept; }"},
		{"nft", "add", "rule", "ip", "theirs", "post", "ip saddr 192.0.2.0/24 counter masquerade"},
	} {
		if _, err := l.Nodes[0].Run(ctx, cmd...); err != nil {
			t.Fatal(err)
		}
	}
	theirs := nftList(t, l.Nodes[0], "table", "ip", "theirs")
	back("nft delete table", "nft", "delete", "table", "inet", "zlayer_overlayd")
	if got := nftList(t, l.Nodes[0], "table", "ip", "theirs"); stripCounters(got) != stripCounters(theirs) {
		t.Fatalf("their table changed:\n%s\nwas\n%s", got, theirs)
	}
	if again := nftList(t, l.Nodes[0], "table", "inet", "zlayer_overlayd"); stripCounters(again) != stripCounters(table) {
		t.Fatalf("restored table differs:\n%s\nwant\n%s", again, table)
	}
	if err := ping(); err != nil {
		t.Fatalf("after the repair the container does not reach the world: %v", err)
	}

	// kill -9 and restart: the table stays through the outage (containers
	// keep reaching the world) and the new daemon adopts it unchanged.
	l.Nodes[0].Kill9()
	if err := ping(); err != nil {
		t.Fatalf("with the daemon down the container lost the world: %v", err)
	}
	if err := l.Nodes[0].Start(); err != nil {
		t.Fatal(err)
	}
	c0 = client(t, l.Nodes[0], nil)
	if again := nftList(t, l.Nodes[0], "table", "inet", "zlayer_overlayd"); stripCounters(again) != stripCounters(table) {
		t.Fatalf("table after restart differs:\n%s\nwant\n%s", again, table)
	}

	// A flow that is running when NAT goes off: its translation goes too
	// (the daemon deletes the conntrack entries the table made), so the
	// same socket's next datagram does not reach the world as the node.
	var worldConn net.PacketConn
	if err := InNetns(world.NetnsPath(), func() (err error) {
		worldConn, err = net.ListenPacket("udp", world.Addr.String()+":9998")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer worldConn.Close()
	var flow net.Conn
	if err := InNetns(a.NetnsPath(), func() (err error) {
		flow, err = net.Dial("udp", world.Addr.String()+":9998")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer flow.Close()
	recv := func() (netip.Addr, bool) {
		buf := make([]byte, 64)
		worldConn.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
		_, from, err := worldConn.ReadFrom(buf)
		if err != nil {
			return netip.Addr{}, false
		}
		return netip.MustParseAddrPort(from.String()).Addr(), true
	}
	flow.Write([]byte("1"))
	if src, ok := recv(); !ok || src != l.Nodes[0].Underlay {
		t.Fatalf("running flow with NAT on: got %v %v, want it from %s", src, ok, l.Nodes[0].Underlay)
	}

	// NAT off: the table goes, and the world is out of reach.
	setNAT(t, c0, false)
	flow.Write([]byte("2"))
	if src, ok := recv(); ok && src == l.Nodes[0].Underlay {
		t.Fatal("NAT off, a flow that ran before still reaches the world as the node (conntrack kept its translation)")
	}
	if rs := nftRuleset(t, l.Nodes[0]); strings.Contains(rs, "zlayer") {
		t.Fatalf("NAT off, table still there:\n%s", rs)
	}
	if ping() == nil {
		t.Fatal("NAT off, the container still reaches the world")
	}

	// Teardown: NAT on again, then everything torn down leaves nothing.
	setNAT(t, c0, true)
	if rs := nftRuleset(t, l.Nodes[0]); !strings.Contains(rs, "zlayer_overlayd") {
		t.Fatal("NAT on again: no table")
	}
	for _, ctr := range []*Container{a, a2} {
		call(t, c0, ipc.DetachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformLinuxPID, PID: uint32(ctr.PID)}})
	}
	call(t, c0, ipc.TeardownServiceOverlay{Service: "web"})
	call(t, c0, ipc.TeardownGlobalOverlay{})
	if rs := nftRuleset(t, l.Nodes[0]); strings.Contains(rs, "zlayer") {
		t.Fatalf("after teardown something of the daemon's remains:\n%s", rs)
	}
	if got := nftList(t, l.Nodes[0], "table", "ip", "theirs"); stripCounters(got) != stripCounters(theirs) {
		t.Fatalf("their table changed:\n%s\nwas\n%s", got, theirs)
	}
}

func stripCounters(s string) string {
	var out []string
	for _, f := range strings.Fields(s) {
		out = append(out, f)
	}
	j := strings.Join(out, " ")
	for {
		i := strings.Index(j, "counter packets ")
		if i < 0 {
			return j
		}
		rest := j[i+len("counter packets "):]
		k := strings.Index(rest, " bytes ")
		rest = rest[k+len(" bytes "):]
		sp := strings.IndexByte(rest, ' ')
		j = j[:i] + "counter" + fmt.Sprint(" ") + rest[sp+1:]
	}
}

// SIGHUP (systemctl reload) repairs drift at once, without waiting for the
// periodic check (10 s by default).
func TestSIGHUPRepairsNow(t *testing.T) {
	_, nd, c := setUpNode(t)
	setNAT(t, c, true)
	ctx := context.Background()
	want, err := nd.Run(ctx, "nft", "list", "table", "inet", "zlayer_overlayd")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nd.Run(ctx, "nft", "flush", "ruleset"); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := syscall.Kill(nd.PID(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for {
		got, err := nd.Run(ctx, "nft", "list", "table", "inet", "zlayer_overlayd")
		if err == nil && stripCounters(got) == stripCounters(want) {
			break
		}
		if time.Since(t0) > 2*time.Second {
			t.Fatalf("table not back 2 s after SIGHUP:\n%s", nd.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("table back %v after SIGHUP", time.Since(t0).Round(time.Millisecond))
	// The daemon is still serving.
	call(t, c, ipc.Status{})
}
