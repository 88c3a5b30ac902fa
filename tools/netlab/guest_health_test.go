//go:build linux

package netlab

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zlayer/overlayd/ipc"
)

// A namespace with no daemon brings up a plain wireguard-go device from a
// guest_config answer alone and pings the node over the overlay; detach
// removes the guest's peer.
func TestGuestFromGuestConfig(t *testing.T) {
	l := newLab(t, 1)
	guestNS, err := l.AddNode() // a namespace on the underlay, no daemon
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	nd := l.Nodes[0]
	if err := nd.Start(); err != nil {
		t.Fatal(err)
	}
	c := client(t, nd, nil)
	info, err := nd.Setup(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	gc := call(t, c, ipc.AttachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformGuest, ID: "vm-1"}, Service: "web", JoinGlobal: true}).(ipc.GuestConfig)
	if gc.Peers[0].Endpoint != fmt.Sprintf("%s:%d", nd.Underlay, Port) || gc.Peers[0].PublicKey != info.PublicKey {
		t.Fatalf("guest config does not point at the node: %+v", gc.Peers)
	}
	b, err := ipc.EncodeResponse(1, gc)
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Response json.RawMessage `json:"response"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(t.TempDir(), "guest.json")
	if err := os.WriteFile(cfgPath, env.Response, 0o600); err != nil {
		t.Fatal(err)
	}
	guest := guestNS.Command(ctx, guestBin, "-config", cfgPath)
	stdout, err := guest.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	guest.Stderr = os.Stderr
	if err := guest.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { guest.Process.Kill(); guest.Wait() })
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); strings.TrimSpace(line) != "up" {
		t.Fatalf("guest: %q", line)
	}
	mustPing(t, guestNS, info.NodeIP, 3)
	mustPing(t, nd, gc.OverlayIP.String(), 3)
	// Its key is a global peer of the node; detach removes it.
	wgOut, err := nd.WG(ctx, "show", info.Device, "allowed-ips")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(wgOut, gc.PublicKey+"\t"+gc.OverlayIP.String()+"/32") {
		t.Fatalf("guest peer missing:\n%s", wgOut)
	}
	call(t, c, ipc.DetachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformGuest, ID: "vm-1"}})
	if wgOut, err := nd.WG(ctx, "show", info.Device, "peers"); err != nil || strings.Contains(wgOut, gc.PublicKey) {
		t.Fatalf("guest peer survived detach (or wg failed: %v):\n%s", err, wgOut)
	}
	if _, recv, _ := ping(t, guestNS, "-c", "2", "-i", "0.2", "-W", "1", info.NodeIP); recv != 0 {
		t.Fatal("a detached guest still reaches the node")
	}
}

// waitEvent waits for a peer_health_changed about key with the given
// health.
func waitEvent(t *testing.T, events <-chan ipc.Event, key string, healthy bool, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.After(timeout)
	for {
		select {
		case ev := <-events:
			if h, ok := ev.(ipc.PeerHealthChanged); ok && h.Pubkey == key && h.Healthy == healthy {
				return time.Since(start)
			}
		case <-deadline:
			t.Fatalf("no peer_health_changed{%s, healthy=%v} within %s", key, healthy, timeout)
		}
	}
}

// Stopping a node's daemon makes its peers report it unhealthy to their
// clients, and healthy again after it restarts. (The threshold is lowered
// from 180 s to 3 s for the test.)
func TestPeerHealthEvents(t *testing.T) {
	l := newLab(t, 2, "--peer-unhealthy-after", "3s")
	ctx := context.Background()
	infos, err := l.Mesh(ctx, 25)
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan ipc.Event, 64)
	client(t, l.Nodes[0], events)
	// Wait until node 1 is known healthy (at most a few checks).
	waitEvent(t, events, infos[1].PublicKey, true, 10*time.Second)
	if err := l.Nodes[1].Stop(); err != nil {
		t.Fatal(err)
	}
	took := waitEvent(t, events, infos[1].PublicKey, false, 15*time.Second)
	t.Logf("unhealthy reported %v after the stop", took.Round(time.Millisecond))
	if err := l.Nodes[1].Start(); err != nil {
		t.Fatal(err)
	}
	took = waitEvent(t, events, infos[1].PublicKey, true, 15*time.Second)
	t.Logf("healthy reported %v after the restart", took.Round(time.Millisecond))
}

// nat_tick: a peer that roams to another address is noticed, journaled and
// pushed as nat_endpoint_changed; after a restart the daemon uses the
// endpoint it last saw.
func TestNatTickFollowsRoamingPeer(t *testing.T) {
	l := newLab(t, 2)
	ctx := context.Background()
	infos, err := l.Mesh(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	a, b := l.Nodes[0], l.Nodes[1]
	mustPing(t, a, infos[1].NodeIP, 2)
	events := make(chan ipc.Event, 64)
	ca := client(t, a, events)
	call(t, ca, ipc.NatTick{}) // nothing moved
	// Node b moves to another underlay address (the old one goes first:
	// deleting a primary address takes its secondaries with it); its next
	// packets roam.
	moved := "172.31.0.111"
	for _, args := range [][]string{
		{"ip", "addr", "del", b.Underlay.String() + "/24", "dev", "ul0"},
		{"ip", "addr", "add", moved + "/24", "dev", "ul0"},
	} {
		if _, err := b.Run(ctx, args...); err != nil {
			t.Fatal(err)
		}
	}
	want := moved + ":51820"
	waitFor(t, 10*time.Second, "node a to see node b's new endpoint", func() bool {
		for _, p := range status(t, ca).Peers {
			if p.PublicKey == infos[1].PublicKey && p.Endpoint == want {
				return true
			}
		}
		return false
	})
	call(t, ca, ipc.NatTick{})
	select {
	case ev := <-events:
		if n, ok := ev.(ipc.NatEndpointChanged); !ok || n.Pubkey != infos[1].PublicKey || n.Endpoint != want {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no nat_endpoint_changed")
	}
	// After a restart the last known endpoint is used, not the one the
	// orchestrator gave.
	a.Kill9()
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	out, err := a.WG(ctx, "show", infos[0].Device, "endpoints")
	if err != nil || !strings.Contains(out, infos[1].PublicKey+"\t"+want) {
		t.Fatalf("after restart: %q %v", out, err)
	}
	mustPing(t, a, infos[1].NodeIP, 2)
}
