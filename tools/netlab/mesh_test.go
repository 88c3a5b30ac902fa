//go:build linux

package netlab

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/zlayer/overlayd/ipc"
)

// Three nodes, full mesh: every node's overlay address answers every other
// node; wg show lists each device's peers; status reports base64 keys and
// real handshake times.
func TestThreeNodeMesh(t *testing.T) {
	l := newLab(t, 3)
	ctx := context.Background()
	infos, err := l.Mesh(ctx, 25)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range l.Nodes {
		for j := range l.Nodes {
			if i != j {
				mustPing(t, a, infos[j].NodeIP, 3)
			}
		}
	}
	for i, nd := range l.Nodes {
		out, err := nd.WG(ctx, "show", infos[i].Device, "dump")
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 3 || !strings.Contains(lines[0], fmt.Sprint(Port)) {
			t.Fatalf("wg show on node %d:\n%s", i, out)
		}
		for j := range l.Nodes {
			if i != j && !hasLine(out, infos[j].PublicKey+"\t(none)\t"+l.Nodes[j].Underlay.String()+":51820\t"+infos[j].Slice) {
				t.Fatalf("node %d's device does not list node %d (%s %s):\n%s", i, j, infos[j].PublicKey, infos[j].Slice, out)
			}
		}
		// MTU 1420, no IPv6 link-local address, the cluster routed through
		// the device.
		link, _ := nd.Run(ctx, "ip", "-d", "link", "show", infos[i].Device)
		addrs, _ := nd.Run(ctx, "ip", "addr", "show", infos[i].Device)
		route, _ := nd.Run(ctx, "ip", "route", "show", "10.200.0.0/16")
		if !strings.Contains(link, "mtu 1420") || strings.Contains(addrs, "fe80") || !strings.Contains(addrs, infos[i].NodeIP+"/16") ||
			!strings.Contains(route, "dev "+infos[i].Device) {
			t.Fatalf("device on node %d:\n%s\n%s\n%s", i, link, addrs, route)
		}
		st := status(t, client(t, nd, nil))
		if *st.PublicKey != infos[i].PublicKey || st.PeerCount != 2 {
			t.Fatalf("status of node %d: %+v", i, st)
		}
		for _, p := range st.Peers {
			age := time.Since(time.Unix(p.LastHandshakeUnixSecs, 0))
			if p.LastHandshakeUnixSecs == 0 || age < -time.Second || age > time.Minute {
				t.Fatalf("node %d reports handshake %d for %s (%s ago): not a real Unix time", i, p.LastHandshakeUnixSecs, p.PublicKey, age)
			}
			if !strings.HasSuffix(p.PublicKey, "=") || len(p.PublicKey) != 44 || p.Endpoint == "" {
				t.Fatalf("node %d peer status: %+v", i, p)
			}
		}
	}
}

// kill -9 a node's daemon and start it again: it comes back with the same
// key, port, device and address, and its peers, without any request, and
// the other nodes reach it again at once.
func TestRestartAfterKill9(t *testing.T) {
	l := newLab(t, 3)
	ctx := context.Background()
	infos, err := l.Mesh(ctx, 25)
	if err != nil {
		t.Fatal(err)
	}
	victim := l.Nodes[1]
	mustPing(t, l.Nodes[0], infos[1].NodeIP, 2)
	before := status(t, client(t, victim, nil))
	wgBefore, err := victim.WG(ctx, "show", infos[1].Device, "dump")
	if err != nil {
		t.Fatal(err)
	}

	victim.Kill9()
	started := time.Now()
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	ready := time.Now()
	// The other nodes' traffic to it flows again.
	var firstReply time.Time
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		_, recv, _ := ping(t, l.Nodes[0], "-c", "1", "-W", "0.2", infos[1].NodeIP)
		if recv == 1 {
			firstReply = time.Now()
			break
		}
	}
	if firstReply.IsZero() {
		t.Fatal("node 0 does not reach the restarted node within 10 s")
	}
	t.Logf("restarted daemon answered %v after start; node 0's first ping reply %v after that (%v after start)",
		ready.Sub(started).Round(time.Millisecond), firstReply.Sub(ready).Round(time.Millisecond), firstReply.Sub(started).Round(time.Millisecond))
	if firstReply.Sub(ready) > time.Second {
		t.Fatalf("traffic resumed %v after the restart, want within 1 s", firstReply.Sub(ready))
	}
	mustPing(t, l.Nodes[2], infos[1].NodeIP, 2)
	mustPing(t, victim, infos[0].NodeIP, 2)
	after := status(t, client(t, victim, nil))
	if *after.PublicKey != *before.PublicKey || *after.NodeIP != *before.NodeIP || *after.Interface != *before.Interface || after.PeerCount != 2 {
		t.Fatalf("identity changed across kill -9:\nbefore %+v\nafter  %+v", before, after)
	}
	wgAfter, err := victim.WG(ctx, "show", infos[1].Device, "dump")
	if err != nil {
		t.Fatal(err)
	}
	first := func(s string) string { return strings.SplitN(s, "\n", 2)[0] }
	if first(wgAfter) != first(wgBefore) { // private key, public key, port, fwmark
		t.Fatalf("device changed:\n%s\n%s", first(wgBefore), first(wgAfter))
	}
}

// Adding and removing AllowedIPs on a live peer, while a ping runs over an
// unchanged prefix, loses no packet; remove_peer removes the peer's routes.
func TestAllowedIPChangesLoseNoPacket(t *testing.T) {
	l := newLab(t, 2)
	ctx := context.Background()
	infos, err := l.Mesh(ctx, 25)
	if err != nil {
		t.Fatal(err)
	}
	a, b := l.Nodes[0], l.Nodes[1]
	mustPing(t, a, infos[1].NodeIP, 2)
	ca, cb := client(t, a, nil), client(t, b, nil)
	done := make(chan struct{})
	changes := 0
	// The changes run beside the ping, spread over its 5 s; a failed call
	// is reported with t.Error (t.Fatal belongs to the test's goroutine).
	go func() {
		defer close(done)
		for i := 0; i < 40; i++ {
			cidr := fmt.Sprintf("10.%d.%d.0/24", 100+i%50, i)
			for _, step := range []struct {
				c   *ipc.Client
				req ipc.Request
			}{
				{ca, ipc.AddAllowedIP{Pubkey: infos[1].PublicKey, CIDR: cidr}},
				{cb, ipc.AddAllowedIP{Pubkey: infos[0].PublicKey, CIDR: cidr}},
				{ca, ipc.RemoveAllowedIP{Pubkey: infos[1].PublicKey, CIDR: cidr}},
				{cb, ipc.RemoveAllowedIP{Pubkey: infos[0].PublicKey, CIDR: cidr}},
				// add_peer with the same key updates the peer in place.
				{ca, ipc.AddPeer{PeerSpec: ipc.PeerSpec{PublicKey: infos[1].PublicKey,
					Endpoint: fmt.Sprintf("%s:%d", b.Underlay, Port), AllowedIPs: infos[1].Slice, PersistentKeepaliveSecs: uint64(20 + i%10)}}},
			} {
				if _, err := step.c.Call(ctx, step.req); err != nil {
					t.Errorf("change %d: %s: %v", i, step.req.Op(), err)
					return
				}
				changes++
			}
			time.Sleep(50 * time.Millisecond) // pacing, not synchronisation
		}
	}()
	sent, recv, out := ping(t, a, "-c", "500", "-i", "0.01", "-W", "1", infos[1].NodeIP)
	<-done
	if t.Failed() {
		t.FailNow()
	}
	if changes != 200 {
		t.Fatalf("%d of 200 changes made during the ping", changes)
	}
	t.Logf("%d AllowedIP and peer updates during %d pings, %d answered", changes, sent, recv)
	if recv != sent {
		t.Fatalf("lost %d of %d packets while AllowedIPs changed:\n%s", sent-recv, sent, out)
	}
	// remove_peer takes its routes away.
	extra := "10.99.0.0/24"
	call(t, ca, ipc.AddAllowedIP{Pubkey: infos[1].PublicKey, CIDR: extra})
	if r := routesProto79(t, a); !hasLine(r, extra) || !hasLine(r, infos[1].Slice) {
		t.Fatalf("routes before remove_peer:\n%s", r)
	}
	call(t, ca, ipc.RemovePeer{Pubkey: infos[1].PublicKey})
	if r := routesProto79(t, a); hasLine(r, extra) || hasLine(r, infos[1].Slice) {
		t.Fatalf("remove_peer left routes behind:\n%s", r)
	}
	if out, err := a.WG(ctx, "show", infos[0].Device, "peers"); err != nil || strings.Contains(out, infos[1].PublicKey) {
		t.Fatalf("peer still on the device (or wg failed: %v):\n%s", err, out)
	}
}

// Two nodes meshed through dedicated devices for one service, with no
// global peers at all.
func TestDedicatedServiceMesh(t *testing.T) {
	l := newLab(t, 2)
	ctx := context.Background()
	type side struct {
		c   *ipc.Client
		svc ipc.ServiceOverlay
	}
	var s [2]side
	for i, nd := range l.Nodes {
		if err := nd.Start(); err != nil {
			t.Fatal(err)
		}
		c := client(t, nd, nil)
		if _, err := nd.Setup(ctx, c); err != nil {
			t.Fatal(err)
		}
		s[i] = side{c: c, svc: call(t, c, ipc.SetupServiceOverlay{Service: "db", Mode: ipc.ModeDedicated}).(ipc.ServiceOverlay)}
		if s[i].svc.WgPort == nil || *s[i].svc.WgPort != 51421 || s[i].svc.WgPublicKey == nil {
			t.Fatalf("dedicated answer: %+v", s[i].svc)
		}
	}
	for i := range s {
		o := s[1-i]
		call(t, s[i].c, ipc.AddPeer{PeerSpec: ipc.PeerSpec{PublicKey: *o.svc.WgPublicKey,
			Endpoint: fmt.Sprintf("%s:%d", l.Nodes[1-i].Underlay, *o.svc.WgPort), AllowedIPs: *o.svc.Subnet, PersistentKeepaliveSecs: 25},
			Scope: &ipc.PeerScope{Service: "db"}})
	}
	for i, nd := range l.Nodes {
		mustPing(t, nd, s[1-i].svc.OverlayIP.String(), 3)
		st := status(t, s[i].c)
		if st.PeerCount != 0 || len(st.DedicatedServices) != 1 || st.DedicatedServices[0].PeerCount != 1 ||
			st.DedicatedServices[0].Interface != "zl-lab-1-db-d" || st.DedicatedServices[0].ListenPort != 51421 {
			t.Fatalf("status of node %d: %+v", i, st)
		}
		out, err := nd.WG(ctx, "show", "zl-lab-1-db-d", "peers")
		if err != nil || strings.TrimSpace(out) != *s[1-i].svc.WgPublicKey {
			t.Fatalf("dedicated device peers on node %d: %q %v", i, out, err)
		}
	}
	// Teardown removes the device and frees the port.
	call(t, s[0].c, ipc.TeardownServiceOverlay{Service: "db"})
	if _, err := l.Nodes[0].Run(ctx, "ip", "link", "show", "zl-lab-1-db-d"); err == nil {
		t.Fatal("the dedicated device survived teardown")
	}
	if st := status(t, s[0].c); len(st.DedicatedServices) != 0 {
		t.Fatalf("status after teardown: %+v", st)
	}
	again := call(t, s[0].c, ipc.SetupServiceOverlay{Service: "cache", Mode: ipc.ModeDedicated}).(ipc.ServiceOverlay)
	if *again.WgPort != 51421 {
		t.Fatalf("the freed port was not reused: %d", *again.WgPort)
	}
}

// An IPv6 cluster: each node derives a /64 slice and the nodes reach each
// other over IPv6 inside the overlay (the underlay stays IPv4).
func TestIPv6Cluster(t *testing.T) {
	l := newLab(t, 2)
	l.Cluster = "fd00:200::/48"
	infos, err := l.Mesh(context.Background(), 25)
	if err != nil {
		t.Fatal(err)
	}
	for i, nd := range l.Nodes {
		if !strings.HasSuffix(infos[i].Slice, "::/64") || !strings.HasPrefix(infos[i].NodeIP, "fd00:200:") {
			t.Fatalf("node %d: slice %s, address %s", i, infos[i].Slice, infos[i].NodeIP)
		}
		addrs, _ := nd.Run(context.Background(), "ip", "-6", "addr", "show", infos[i].Device)
		if !strings.Contains(addrs, infos[i].NodeIP+"/48") || strings.Contains(addrs, "fe80") {
			t.Fatalf("device addresses on node %d:\n%s", i, addrs)
		}
		mustPing(t, nd, infos[1-i].NodeIP, 3)
	}
}
