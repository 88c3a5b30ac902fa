//go:build linux

package netlab

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zlayer/overlayd/ipc"
)

type svcMap map[int]map[string]ipc.ServiceOverlay // node -> service -> answer

// setupServices sets up services on every node and plays the
// orchestrator's part: each node routes the other nodes' service subnets
// to them.
func setupServices(t *testing.T, l *Lab, infos []NodeInfo, mode ipc.Mode, services ...string) svcMap {
	t.Helper()
	out := svcMap{}
	for i, nd := range l.Nodes {
		c := client(t, nd, nil)
		out[i] = map[string]ipc.ServiceOverlay{}
		for _, s := range services {
			out[i][s] = call(t, c, ipc.SetupServiceOverlay{Service: s, Mode: mode}).(ipc.ServiceOverlay)
		}
	}
	for i, nd := range l.Nodes {
		c := client(t, nd, nil)
		for j := range l.Nodes {
			if i == j {
				continue
			}
			for _, s := range services {
				call(t, c, ipc.AddAllowedIP{Pubkey: infos[j].PublicKey, CIDR: *out[j][s].Subnet})
			}
		}
	}
	return out
}

func attach(t *testing.T, c *ipc.Client, ctr *Container, service string) string {
	t.Helper()
	r := call(t, c, ipc.AttachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformLinuxPID, PID: uint32(ctr.PID)}, Service: service, JoinGlobal: true})
	return r.(ipc.Attached).IP.String()
}

// ownedLinks lists the node's container links (host ends) and bridges.
func ownedLinks(t *testing.T, nd *Node) (veths, bridges []string) {
	t.Helper()
	out, err := nd.Run(context.Background(), "ip", "-o", "link", "show")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name := strings.TrimSuffix(strings.SplitN(f[1], "@", 2)[0], ":")
		switch {
		case strings.HasPrefix(name, "zv"):
			veths = append(veths, name)
		case strings.HasSuffix(name, "-b"):
			bridges = append(bridges, name)
		}
	}
	return veths, bridges
}

type placed struct {
	ctr  *Container
	node int
	ip   string
}

// Two nodes, two services, three containers per service per node: every
// container reaches every other one, across nodes, through the bridges and
// the WireGuard mesh.
func TestContainersAcrossNodes(t *testing.T) {
	l := newLab(t, 2)
	ctx := context.Background()
	infos, err := l.Mesh(ctx, 25)
	if err != nil {
		t.Fatal(err)
	}
	svcs := setupServices(t, l, infos, ipc.ModeShared, "web", "db")
	var all []placed
	for i, nd := range l.Nodes {
		c := client(t, nd, nil)
		for _, s := range []string{"web", "db"} {
			for k := 0; k < 3; k++ {
				ctr, err := l.NewContainer()
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, placed{ctr, i, attach(t, c, ctr, s)})
			}
		}
	}
	// The container side: eth0 with MTU 1420, the default route via the
	// gateway, lo up; eth1 with its global address.
	one, _ := all[0].ctr.Run(ctx, "ip", "-d", "addr")
	route, _ := all[0].ctr.Run(ctx, "ip", "route")
	if !strings.Contains(one, "eth0@") || !strings.Contains(one, "mtu 1420") || !strings.Contains(one, all[0].ip+"/28") ||
		!strings.Contains(one, "eth1@") || !strings.Contains(route, "default via "+svcs[0]["web"].OverlayIP.String()) {
		t.Fatalf("container wiring:\n%s\n%s", one, route)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	sem := make(chan struct{}, 8)
	for _, a := range all {
		for _, b := range all {
			if a.ip == b.ip {
				continue
			}
			wg.Add(1)
			sem <- struct{}{}
			go func(a, b placed) {
				defer wg.Done()
				defer func() { <-sem }()
				out, err := a.ctr.Run(ctx, "ping", "-n", "-c", "1", "-W", "2", b.ip)
				if err != nil {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("node %d %s -> node %d %s: %s", a.node, a.ip, b.node, b.ip, lastLine(out)))
					mu.Unlock()
				}
			}(a, b)
		}
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d container pairs do not reach each other:\n%s", len(failures), len(all)*(len(all)-1), strings.Join(failures, "\n"))
	}
	t.Logf("%d containers on 2 nodes, %d pairs reach each other", len(all), len(all)*(len(all)-1))
	// Bridges carry the fixed MAC and MTU 1420.
	for i, nd := range l.Nodes {
		out, _ := nd.Run(ctx, "ip", "-d", "link", "show", svcs[i]["web"].Name)
		if !strings.Contains(out, "mtu 1420") || !strings.Contains(out, "link/ether 02:5a:") || !strings.Contains(out, "zlayer-overlayd bridge web") {
			t.Fatalf("bridge on node %d:\n%s", i, out)
		}
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// An attach that fails part-way answers err naming the step, is undone in
// the journal, and leaves nothing behind; attaching a PID that does not
// exist, or to a service that was never set up, changes nothing.
func TestAttachFailuresLeaveNothing(t *testing.T) {
	l, nd, c := setUpNode(t)
	ctx := context.Background()
	call(t, c, ipc.SetupServiceOverlay{Service: "web", Mode: ipc.ModeShared})
	ctr := newContainer(t, l)
	for _, tc := range []struct {
		req  ipc.Request
		want string
	}{
		{ipc.AttachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformLinuxPID, PID: 4000000}, Service: "web"}, "handle.pid: process 4000000 does not exist"},
		{ipc.AttachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformLinuxPID, PID: uint32(ctr.PID)}, Service: "never"}, "service: service never is not set up"},
	} {
		_, err := c.Call(ctx, tc.req)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%+v: %v, want %q", tc.req, err, tc.want)
		}
	}
	// A container that already has an eth0: the veth step fails.
	if _, err := ctr.Run(ctx, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "blocker"); err != nil {
		t.Fatal(err)
	}
	_, err := c.Call(ctx, ipc.AttachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformLinuxPID, PID: uint32(ctr.PID)}, Service: "web", JoinGlobal: true})
	if err == nil || !strings.Contains(err.Error(), "veth:") {
		t.Fatalf("attach into a container with an eth0: %v", err)
	}
	t.Logf("answer: %v", err)
	if veths, _ := ownedLinks(t, nd); len(veths) != 0 {
		t.Fatalf("a failed attach left links: %v", veths)
	}
	// The attachment was undone in the journal: not in the state, its
	// addresses free again.
	if st := ctlState(t, nd); strings.Contains(st, "linux_pid:") {
		t.Fatalf("the failed attachment is still in the state:\n%s", st)
	}
	// Once the obstacle is gone, the same attach works.
	if _, err := ctr.Run(ctx, "ip", "link", "del", "eth0"); err != nil {
		t.Fatal(err)
	}
	call(t, c, ipc.AttachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformLinuxPID, PID: uint32(ctr.PID)}, Service: "web", JoinGlobal: true})
	if veths, _ := ownedLinks(t, nd); len(veths) != 2 {
		t.Fatalf("links after a good attach: %v", veths)
	}
}

// ctlState returns the daemon's state as JSON.
func ctlState(t *testing.T, nd *Node) string {
	t.Helper()
	c := client(t, nd, nil)
	_, st, err := ipc.FetchState(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return string(st)
}

// A container that exits without a detach, its PID reused by a new process
// in another namespace: the old attachment is detached, and the new
// process is not wired by mistake.
func TestPIDReuse(t *testing.T) {
	l, nd, c := setUpNode(t, "--reconcile-interval", "300ms")
	ctx := context.Background()
	call(t, c, ipc.SetupServiceOverlay{Service: "web", Mode: ipc.ModeShared})
	old := newContainer(t, l)
	oldIP := attach(t, c, old, "web")
	pid := old.PID
	old.Kill()
	reborn, err := l.NewContainerWithPID(pid)
	if err != nil {
		t.Skipf("could not reuse pid %d: %v", pid, err)
	}
	waitFor(t, 5*time.Second, "the old attachment to be detached", func() bool {
		return !strings.Contains(ctlState(t, nd), fmt.Sprintf(`"linux_pid:%d"`, pid))
	})
	if out, err := reborn.Run(ctx, "ip", "-o", "link"); err != nil || strings.Contains(out, "eth0") || strings.Contains(out, "eth1") {
		t.Fatalf("the new process was wired by mistake (or its links cannot be listed: %v):\n%s", err, out)
	}
	if veths, _ := ownedLinks(t, nd); len(veths) != 0 {
		t.Fatalf("links left: %v", veths)
	}
	// Attaching the new process is a new attachment.
	newIP := attach(t, c, reborn, "web")
	if out, err := reborn.Run(ctx, "ip", "-o", "addr"); err != nil || !strings.Contains(out, newIP) {
		t.Fatalf("new container not wired:\n%s", out)
	}
	t.Logf("pid %d: old attachment %s detached, new one %s", pid, oldIP, newIP)
}

// Deleting a container's host veth or a service bridge by hand is repaired
// within the check interval.
func TestBridgeDriftRepair(t *testing.T) {
	l, nd, c := setUpNode(t, "--reconcile-interval", "500ms")
	ctx := context.Background()
	web := call(t, c, ipc.SetupServiceOverlay{Service: "web", Mode: ipc.ModeShared}).(ipc.ServiceOverlay)
	ctr := newContainer(t, l)
	attach(t, c, ctr, "web")
	gw := web.OverlayIP.String()
	// Through eth0, the service leg: with eth0 gone the gateway still
	// answers ARP on eth1, the global leg, as every node address does.
	reach := func() bool {
		_, err := ctr.Run(ctx, "ping", "-c", "1", "-W", "0.3", "-I", "eth0", gw)
		return err == nil
	}
	if !reach() {
		t.Fatal("container does not reach its gateway")
	}
	// The repair can be quicker than a ping, so "reachable again" alone
	// does not show that anything was deleted: the link must also come
	// back as a new one (another ifindex).
	ifindex := func(name string) string {
		t.Helper()
		out, err := nd.Run(ctx, "ip", "-o", "link", "show", name)
		if err != nil {
			if strings.Contains(out, "does not exist") {
				return ""
			}
			t.Fatal(err)
		}
		return strings.SplitN(out, ":", 2)[0]
	}
	veths, _ := ownedLinks(t, nd)
	var leg string
	for _, v := range veths {
		if strings.HasSuffix(v, "s") {
			leg = v
		}
	}
	if leg == "" {
		t.Fatalf("no service leg among %v", veths)
	}
	for _, name := range []string{leg, web.Name} {
		old := ifindex(name)
		if _, err := nd.Run(ctx, "ip", "link", "del", name); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		waitFor(t, 5*time.Second, "the deleted "+name+" to be restored", func() bool {
			now := ifindex(name)
			return now != "" && now != old && reach()
		})
		t.Logf("%s restored in %v", name, time.Since(start).Round(time.Millisecond))
	}
}

// A veth with the daemon's name pattern and no mark is what a crash between
// creating a pair and marking it leaves: the periodic pass removes it. A
// link with another name, or with a mark that is not ours, is not touched.
func TestUnmarkedLegRemoved(t *testing.T) {
	l, nd, c := setUpNode(t, "--reconcile-interval", "300ms")
	ctx := context.Background()
	call(t, c, ipc.SetupServiceOverlay{Service: "web", Mode: ipc.ModeShared})
	ctr := newContainer(t, l)
	attach(t, c, ctr, "web")
	mk := func(name, peer string) {
		if _, err := nd.Run(ctx, "ip", "link", "add", name, "type", "veth", "peer", "name", peer); err != nil {
			t.Fatal(err)
		}
	}
	mk("zv0badc0des", "zt-stray-p")  // ours by name, unmarked: a crash leftover
	mk("zv0badc0dex", "zt-other-p")  // not our pattern (leg letter)
	mk("zt-foreign", "zt-foreign-p") // someone else's
	if _, err := nd.Run(ctx, "ip", "link", "set", "zt-foreign", "alias", "not ours"); err != nil {
		t.Fatal(err)
	}
	exists := func(name string) bool {
		t.Helper()
		out, err := nd.Run(ctx, "ip", "link", "show", name)
		if err != nil && !strings.Contains(out, "does not exist") {
			t.Fatal(err)
		}
		return err == nil
	}
	waitFor(t, 5*time.Second, "the unmarked leftover to be removed", func() bool { return !exists("zv0badc0des") })
	// Two more passes, each known to have run because it removed a
	// leftover made after the previous one: a pass that removes a
	// leftover listed the links after it was made, the other two among
	// them, and left those alone.
	for _, sentinel := range []string{"zv0badc0d1s", "zv0badc0d2g"} {
		mk(sentinel, "zt-sentinel-p")
		waitFor(t, 5*time.Second, "the leftover "+sentinel+" to be removed", func() bool { return !exists(sentinel) })
	}
	for _, name := range []string{"zv0badc0dex", "zt-foreign"} {
		if !exists(name) {
			t.Errorf("%s was deleted but is not the daemon's", name)
		}
	}
	// The container's own legs are still there and it still has eth0.
	if out, err := ctr.Run(ctx, "ip", "-o", "-4", "addr", "show", "eth0"); err != nil || !strings.Contains(out, "inet ") {
		t.Fatalf("the container lost its address: %v %s", err, out)
	}
}

// teardown_service_overlay of a shared service with containers on it:
// the containers are detached (their eth0 and eth1 gone, their addresses
// free), the bridge is deleted; a repeat is ok; the other service's
// container is untouched; the service can be set up again and used.
func TestTeardownServiceRemovesEverything(t *testing.T) {
	l, nd, c := setUpNode(t)
	ctx := context.Background()
	web := call(t, c, ipc.SetupServiceOverlay{Service: "web", Mode: ipc.ModeShared}).(ipc.ServiceOverlay)
	db := call(t, c, ipc.SetupServiceOverlay{Service: "db", Mode: ipc.ModeShared}).(ipc.ServiceOverlay)
	if web.Subnet == nil || web.OverlayIP == nil {
		t.Fatalf("shared service answer without subnet or gateway: %+v", web)
	}
	w1 := newContainer(t, l)
	w2 := newContainer(t, l)
	d1 := newContainer(t, l)
	attach(t, c, w1, "web")
	call(t, c, ipc.AttachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformLinuxPID, PID: uint32(w2.PID)}, Service: "web"})
	dbIP := attach(t, c, d1, "db")
	if veths, bridges := ownedLinks(t, nd); len(veths) != 5 || len(bridges) != 2 {
		t.Fatalf("before teardown: veths %v bridges %v", veths, bridges)
	}
	call(t, c, ipc.TeardownServiceOverlay{Service: "web"})
	call(t, c, ipc.TeardownServiceOverlay{Service: "web"}) // a repeat: ok
	veths, bridges := ownedLinks(t, nd)
	if len(veths) != 2 || len(bridges) != 1 || bridges[0] != db.Name {
		t.Fatalf("after teardown: veths %v bridges %v (want db's 2 legs and %s)", veths, bridges, db.Name)
	}
	for _, ctr := range []*Container{w1, w2} {
		if out, err := ctr.Run(ctx, "ip", "-o", "link", "show"); err != nil || strings.Contains(out, "eth0") || strings.Contains(out, "eth1") {
			t.Fatalf("container %d still has links after teardown: %v\n%s", ctr.PID, err, out)
		}
	}
	st := ctlState(t, nd)
	if !strings.Contains(st, fmt.Sprintf("linux_pid:%d\"", d1.PID)) {
		t.Fatalf("db's container is not in the state (or the state names handles otherwise):\n%s", st)
	}
	for _, ctr := range []*Container{w1, w2} {
		if strings.Contains(st, fmt.Sprintf("linux_pid:%d\"", ctr.PID)) {
			t.Fatalf("container %d still attached in the state", ctr.PID)
		}
	}
	if out, err := d1.Run(ctx, "ping", "-c", "1", "-W", "1", db.OverlayIP.String()); err != nil {
		t.Fatalf("db's container lost its gateway (%s): %v\n%s", dbIP, err, out)
	}
	// Set up again: a bridge again, and a container wired on it.
	again := call(t, c, ipc.SetupServiceOverlay{Service: "web", Mode: ipc.ModeShared}).(ipc.ServiceOverlay)
	w3 := newContainer(t, l)
	attach(t, c, w3, "web")
	if out, err := w3.Run(ctx, "ping", "-c", "1", "-W", "1", again.OverlayIP.String()); err != nil {
		t.Fatalf("a container of the re-created service does not reach its gateway: %v\n%s", err, out)
	}
}
