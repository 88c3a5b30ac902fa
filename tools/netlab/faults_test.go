//go:build linux

package netlab

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zlayer/overlayd/ipc"
)

// kernelView is what a node's namespace and its containers hold, as text:
// the links (name, kind, mark, master, state) and addresses of the node,
// and every container's links, addresses and routes. Two views are equal
// when nothing of the daemon's was touched.
func kernelView(t *testing.T, nd *Node, ctrs ...*Container) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	out, err := nd.Run(ctx, "ip", "-d", "-o", "link", "show")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		name := strings.TrimSuffix(strings.SplitN(f[1], "@", 2)[0], ":")
		if !strings.HasPrefix(name, "zv") && !strings.HasPrefix(name, "zl-") {
			continue
		}
		keep := []string{name}
		for i, w := range f {
			switch w {
			case "master", "state", "mtu":
				if i+1 < len(f) {
					keep = append(keep, w+"="+f[i+1])
				}
			case "alias":
				keep = append(keep, "alias="+strings.Join(f[i+1:], " "))
			}
		}
		lines = append(lines, strings.Join(keep, " "))
	}
	sort.Strings(lines)
	b.WriteString(strings.Join(lines, "\n"))
	if out, err := nd.Run(ctx, "ip", "-4", "-o", "addr", "show"); err == nil {
		b.WriteString("\n" + stripLifetimes(out))
	}
	for _, c := range ctrs {
		for _, args := range [][]string{{"ip", "-4", "-o", "addr", "show"}, {"ip", "route", "show"}, {"ip", "-o", "link", "show"}} {
			out, err := c.Run(ctx, args...)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "\ncontainer %d %s:\n%s", c.PID, args[1], stripLifetimes(out))
		}
	}
	return b.String()
}

// stripLifetimes drops what changes on its own (address lifetimes).
func stripLifetimes(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "valid_lft") {
			l = l[:strings.Index(l, "valid_lft")]
		}
		out = append(out, strings.TrimSpace(l))
	}
	return strings.Join(out, "\n")
}

// nodeWithContainers starts one node with the global overlay, a service
// and n containers attached to it (joined to the global overlay).
func nodeWithContainers(t *testing.T, n int, daemonArgs ...string) (*Lab, *Node, *ipc.Client, []*Container) {
	t.Helper()
	l, nd, c := setUpNode(t, daemonArgs...)
	call(t, c, ipc.SetupServiceOverlay{Service: "web", Mode: ipc.ModeShared})
	var ctrs []*Container
	for range n {
		ctr, err := l.NewContainer()
		if err != nil {
			t.Fatal(err)
		}
		attach(t, c, ctr, "web")
		ctrs = append(ctrs, ctr)
	}
	return l, nd, c, ctrs
}

// startFails starts the node's daemon and expects it to exit non-zero
// with a log naming every one of want.
func startFails(t *testing.T, nd *Node, want ...string) string {
	t.Helper()
	err := nd.Start()
	if err == nil {
		t.Fatal("the daemon started")
	}
	if !strings.Contains(err.Error(), "exited (exit status 1)") {
		t.Fatalf("the daemon did not exit with status 1: %v", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("the refusal does not name %q:\n%v", w, err)
		}
	}
	return err.Error()
}

// An empty journal.db beside a snapshot: the daemon refuses to boot,
// names the file, and leaves every bridge, veth and container as it was,
// and the snapshot as it was.
func TestEmptyJournalRefusesAndTouchesNothing(t *testing.T) {
	_, nd, c, ctrs := nodeWithContainers(t, 2)
	c.Close()
	if err := nd.Stop(); err != nil {
		t.Fatal(err)
	}
	before := kernelView(t, nd, ctrs...)
	if veths, bridges := ownedLinks(t, nd); len(veths) != 2*len(ctrs) || len(bridges) != 1 {
		t.Fatalf("the view to compare holds %d veths and %d bridges:\n%s", len(veths), len(bridges), before)
	}
	jd := filepath.Join(nd.DataDir, "overlayd")
	snap, err := os.ReadFile(filepath.Join(jd, "snapshot"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(jd, "journal.db"), 0); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		startFails(t, nd, filepath.Join(jd, "journal.db"), "empty (0 bytes)", "snapshot")
	}
	if after := kernelView(t, nd, ctrs...); after != before {
		t.Fatalf("a refused boot changed the kernel:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if got, _ := os.ReadFile(filepath.Join(jd, "snapshot")); !bytes.Equal(got, snap) {
		t.Fatal("the snapshot changed")
	}
	if fi, err := os.Stat(filepath.Join(jd, "journal.db")); err != nil || fi.Size() != 0 {
		t.Fatalf("the empty journal file changed: %v", err)
	}
	for _, ctr := range ctrs {
		if out, err := ctr.Run(context.Background(), "ip", "-o", "-4", "addr", "show", "eth0"); err != nil || !strings.Contains(out, "inet ") {
			t.Fatalf("container %d lost its address: %v %s", ctr.PID, err, out)
		}
	}
}

// A data dir copied to a second node (same machine: same PIDs, same
// container namespaces) must leave the first node's containers alone.
func TestCopiedDataDirLeavesTheOriginalAlone(t *testing.T) {
	l := newLab(t, 2, "--reconcile-interval", "300ms")
	a, b := l.Nodes[0], l.Nodes[1]
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	ca := client(t, a, nil)
	if _, err := a.Setup(context.Background(), ca); err != nil {
		t.Fatal(err)
	}
	call(t, ca, ipc.SetupServiceOverlay{Service: "web", Mode: ipc.ModeShared})
	var ctrs []*Container
	for range 2 {
		ctr, err := l.NewContainer()
		if err != nil {
			t.Fatal(err)
		}
		attach(t, ca, ctr, "web")
		ctrs = append(ctrs, ctr)
	}
	ca.Close()
	if err := a.Stop(); err != nil { // a consistent copy: the daemon is stopped
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", filepath.Join(a.DataDir, "overlayd"), b.DataDir).CombinedOutput(); err != nil {
		t.Fatalf("copy: %v %s", err, out)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	before := kernelView(t, a, ctrs...)
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	cb := client(t, b, nil)
	// Several of b's checks run; the original's objects stay as they were.
	waitFor(t, 10*time.Second, "node b to report the attachments it must leave alone", func() bool {
		st := status(t, cb)
		n := 0
		for _, p := range st.Problems {
			if strings.HasPrefix(p.Resource, "attachment/") {
				n++
			}
		}
		return n == len(ctrs)
	})
	time.Sleep(time.Second) // three more periodic checks of b
	if after := kernelView(t, a, ctrs...); after != before {
		t.Fatalf("node b changed node a's objects:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	// b did not journal the containers as gone either: its state still
	// lists them (they are a's, wired by a).
	st := status(t, cb)
	for _, p := range st.Problems {
		t.Logf("node b problem: %s: %s", p.Resource, p.Error)
	}
	mustPing(t, a, strings.TrimSpace(firstAddr(t, ctrs[0])), 2)
}

func firstAddr(t *testing.T, c *Container) string {
	t.Helper()
	out, err := c.Run(context.Background(), "ip", "-o", "-4", "addr", "show", "eth0")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(out)
	for i, w := range f {
		if w == "inet" && i+1 < len(f) {
			return strings.SplitN(f[i+1], "/", 2)[0]
		}
	}
	t.Fatalf("container %d has no address: %s", c.PID, out)
	return ""
}

// A socket file removed by hand comes back within the check interval, and
// at once on SIGHUP; the connection that was open keeps working.
func TestRemovedSocketComesBack(t *testing.T) {
	_, nd, c := setUpNode(t, "--reconcile-interval", "300ms")
	for _, how := range []string{"interval", "sighup"} {
		if err := os.Remove(nd.Socket); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if how == "sighup" {
			if err := syscall.Kill(nd.PID(), syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 3*time.Second, "the socket file to come back ("+how+")", func() bool {
			conn, err := net.DialTimeout("unix", nd.Socket, 100*time.Millisecond)
			if err != nil {
				return false
			}
			conn.Close()
			return true
		})
		t.Logf("%s: socket back after %v", how, time.Since(start).Round(time.Millisecond))
		fresh := client(t, nd, nil)
		status(t, fresh)
		status(t, c) // the old connection was never cut
		if fi, err := os.Stat(nd.Socket); err != nil || fi.Mode().Perm() != 0o660 {
			t.Fatalf("restored socket: %v %v", fi, err)
		}
	}
}

// A wg_port another process holds: setup_global_overlay answers err
// naming the port, and status lists the problem; once the port is free the
// next check makes the device listen and the problem goes.
func TestTakenWireGuardPort(t *testing.T) {
	l := newLab(t, 1, "--reconcile-interval", "300ms")
	nd := l.Nodes[0]
	if err := nd.Start(); err != nil {
		t.Fatal(err)
	}
	c := client(t, nd, nil)
	var hold net.PacketConn
	if err := InNetns(nd.NetnsPath(), func() (err error) {
		hold, err = net.ListenPacket("udp", ":51820")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	setup := ipc.SetupGlobalOverlay{Deployment: "prod", InstanceID: "1", ClusterCIDR: "10.200.0.0/16", WgPort: 51820}
	for range 2 { // the first time and a repeat
		r, err := c.Call(context.Background(), setup)
		if err == nil || !strings.Contains(err.Error(), "51820") {
			t.Fatalf("setup_global_overlay on a taken port answered %#v, %v", r, err)
		}
		t.Logf("answer: %v", err)
	}
	st := status(t, c)
	if !hasProblem(st, "global", "51820") {
		t.Fatalf("status does not list the taken port: %+v", st.Problems)
	}
	hold.Close()
	waitFor(t, 5*time.Second, "the device to listen on 51820 and the problem to go", func() bool {
		out, _ := nd.WG(context.Background(), "show", "zl-prod-1-g", "listen-port")
		return strings.TrimSpace(out) == "51820" && !hasProblem(status(t, c), "global", "")
	})
	if r := call(t, c, setup); func() bool { _, ok := r.(ipc.BridgeName); return !ok }() {
		t.Fatalf("setup_global_overlay after the port was freed answered %#v", r)
	}
}

func hasProblem(st ipc.StatusResult, resource, text string) bool {
	for _, p := range st.Problems {
		if p.Resource == resource && strings.Contains(p.Error, text) {
			return true
		}
	}
	return false
}
