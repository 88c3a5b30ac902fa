//go:build linux

package netlab

import (
	"context"
	"strings"
	"testing"
	"time"
)

// The periodic check repairs WireGuard drift: a peer removed and a route
// deleted behind the daemon's back come back, and a device deleted by hand
// is recreated with the same key, port and address.
func TestWireGuardDriftRepair(t *testing.T) {
	l := newLab(t, 2, "--reconcile-interval", "500ms")
	ctx := context.Background()
	infos, err := l.Mesh(ctx, 25)
	if err != nil {
		t.Fatal(err)
	}
	a := l.Nodes[0]
	dev := infos[0].Device
	if _, err := a.WG(ctx, "set", dev, "peer", infos[1].PublicKey, "remove"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Run(ctx, "ip", "route", "del", infos[1].Slice, "dev", dev); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the removed peer and route to come back", func() bool {
		out, _ := a.WG(ctx, "show", dev, "peers")
		return strings.Contains(out, infos[1].PublicKey) && hasLine(routesProto79(t, a), infos[1].Slice)
	})
	mustPing(t, a, infos[1].NodeIP, 2)
	before, err := a.WG(ctx, "show", dev, "dump")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Run(ctx, "ip", "link", "del", dev); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the deleted device to come back", func() bool {
		_, err := a.Run(ctx, "ip", "link", "show", dev)
		return err == nil
	})
	waitFor(t, 5*time.Second, "node a to reach node b again", func() bool {
		_, recv, _ := ping(t, a, "-c", "1", "-W", "0.3", infos[1].NodeIP)
		return recv == 1
	})
	after, err := a.WG(ctx, "show", dev, "dump")
	if err != nil {
		t.Fatal(err)
	}
	if strings.SplitN(before, "\n", 2)[0] != strings.SplitN(after, "\n", 2)[0] {
		t.Fatalf("recreated device differs:\n%s\n%s", before, after)
	}
	if out, _ := a.Run(ctx, "ip", "-4", "addr", "show", dev); !strings.Contains(out, infos[0].NodeIP+"/16") {
		t.Fatalf("address not restored:\n%s", out)
	}
}
