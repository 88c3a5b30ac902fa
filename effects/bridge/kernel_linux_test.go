//go:build linux

package bridge

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zlayer/overlayd/effects"
)

// The real kernel's tests run as root in the test binary's own network
// namespace (TestMain), with containers in namespaces of their own that
// die with their process. Each test deletes every link it leaves. (This
// kernel has no dummy links: a bridge stands in where one would do.)

// realHarness is a harness whose reconciler drives the real kernel: the
// node's overlay address on a link of its own ("ovl0"), as the WireGuard
// device would hold it.
func realHarness(t *testing.T, owner effects.Owner) *harness {
	t.Helper()
	requireNetns(t)
	h := newView(t)
	k := newKernel()
	h.r = newReconciler(testLog(t), h.onDetach, owner, k)
	t.Cleanup(func() {
		h.r.Close()
		cleanLinks(t)
	})
	if _, err := k.LinkByName("ovl0"); notFound(err) {
		runHere(t, "ip", "link", "add", "ovl0", "type", "bridge")
		runHere(t, "ip", "addr", "add", "10.200.0.1/16", "dev", "ovl0")
		runHere(t, "ip", "link", "set", "ovl0", "up")
	}
	return h
}

// cleanLinks deletes every link of the test's (or benchmark's) namespace
// but lo.
func cleanLinks(tb testing.TB) {
	tb.Helper()
	k := newKernel()
	defer k.Close()
	links, err := k.Links()
	if err != nil {
		tb.Errorf("clean up: %v", err)
		return
	}
	for _, l := range links {
		if l.Name != "lo" {
			if err := k.DelLink(l); err != nil && !notFound(err) {
				tb.Errorf("clean up %s: %v", l.Name, err)
			}
		}
	}
}

// renderVia prints what a Kernel shows of the node's bridges and veths
// and of the containers' eth0 and eth1: kind, name, MTU, state, master,
// peer (veths), alias, addresses (link-local ones aside). It renders the
// fake and the real kernel alike, so the two can be compared.
func renderVia(t *testing.T, k Kernel, pids ...uint32) string {
	t.Helper()
	links, err := k.Links()
	if err != nil {
		t.Fatal(err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Index] = l.Name
	}
	var b strings.Builder
	line := func(l Link, master string, addrs []netip.Prefix) {
		fmt.Fprintf(&b, "  %s %s mtu %d", l.Kind, l.Name, l.MTU)
		if l.Up {
			b.WriteString(" up")
		}
		if master != "" {
			b.WriteString(" master " + master)
		}
		if l.Kind == "veth" && l.Peer != 0 {
			b.WriteString(" paired")
		}
		if l.Alias != "" {
			fmt.Fprintf(&b, " alias %q", l.Alias)
		}
		b.WriteString("\n")
		sort.Slice(addrs, func(i, j int) bool { return addrs[i].Addr().Less(addrs[j].Addr()) })
		for _, p := range addrs {
			if !p.Addr().IsLinkLocalUnicast() {
				fmt.Fprintf(&b, "    addr %s\n", p)
			}
		}
	}
	b.WriteString("node\n")
	sort.Slice(links, func(i, j int) bool { return links[i].Name < links[j].Name })
	for _, l := range links {
		if l.Kind != "bridge" && l.Kind != "veth" || l.Name == "ovl0" {
			continue
		}
		addrs, err := k.Addrs(l.Index)
		if err != nil {
			t.Fatal(err)
		}
		line(l, names[l.Master], addrs)
	}
	for _, pid := range pids {
		fmt.Fprintf(&b, "pid\n")
		ns, err := k.OpenNetns(pid)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"eth0", "eth1"} {
			l, err := ns.LinkByName(name)
			if notFound(err) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			addrs, err := ns.Addrs(l.Index)
			if err != nil {
				t.Fatal(err)
			}
			line(l, "", addrs)
		}
		ns.Close()
	}
	return b.String()
}

// The fake kernel behaves as the real one where the reconciler relies on
// it: the same passes over the same state (the fake's container has the
// real one's PID and namespace inode, so names and marks are equal) leave
// both showing the same links, marks and addresses, after wiring, a bridge
// deleted by hand (its ports fall off), the repair, a container's address
// changed and repaired, a detach, and an attach refused because the
// container already has an eth0 (the same step, the same errno).
func TestRealMatchesFake(t *testing.T) {
	ctr := newTestContainer(t)
	real := realHarness(t, ownerA)
	fake := newHarness(t, ownerA)
	fake.k.spawnAs(ctr.pid, ctr.inode)
	both := []*harness{real, fake}
	compare := func(what string) string {
		t.Helper()
		r, f := renderVia(t, real.r.k, ctr.pid), renderVia(t, fake.r.k, ctr.pid)
		if r != f {
			t.Fatalf("%s: the fake differs from the kernel:\n--- kernel\n%s--- fake\n%s", what, r, f)
		}
		return r
	}
	for _, h := range both {
		h.service("web", "10.200.1.0/28")
		h.attachIno(ctr.pid, ctr.inode, "web", "10.200.1.2", "10.200.128.2")
		h.converge()
	}
	wired := compare("wired")
	// repair runs a full pass on both, which must bring back the wiring.
	repair := func(what string) {
		t.Helper()
		for _, h := range both {
			h.must(h.full())
		}
		if compare(what) != wired {
			t.Fatalf("%s: the full pass did not restore the wiring", what)
		}
	}
	t.Logf("wired:\n%s", wired)
	if !strings.Contains(wired, `veth eth0 mtu 1420 up paired alias "zlayer-overlayd ctr linux_pid:`) {
		t.Fatalf("container end not marked:\n%s", wired)
	}
	for _, h := range both {
		h.must(h.r.k.DelLink(Link{Name: "web-b"}))
	}
	compare("bridge deleted")
	repair("bridge repaired")
	for _, h := range both {
		ns, err := h.r.k.OpenNetns(ctr.pid)
		h.must(err)
		c, err := ns.LinkByName("eth0")
		h.must(err)
		h.must(ns.ReplaceAddr(c.Index, netip.MustParsePrefix("10.200.1.9/28")))
		ns.Close()
	}
	compare("container address added")
	repair("container repaired")
	for _, h := range both {
		h.detach(ctr.pid)
		h.must(h.change(fmt.Sprintf("attachment/linux_pid:%d", ctr.pid)))
	}
	if r := compare("detached"); strings.Contains(r, "veth") {
		t.Fatalf("links left after the detach:\n%s", r)
	}
	ctr.run(t, "ip", "link", "add", "eth0", "type", "bridge")
	fake.k.mu.Lock()
	fake.k.procs[ctr.pid].add(&fakeLink{Link: Link{Name: "eth0", Kind: "bridge", MTU: 1500}})
	fake.k.mu.Unlock()
	var steps []string
	for _, h := range both {
		h.attachIno(ctr.pid, ctr.inode, "web", "10.200.1.2", "")
		err := keyErr(t, h.change(fmt.Sprintf("attachment/linux_pid:%d", ctr.pid)), fmt.Sprintf("attachment/linux_pid:%d", ctr.pid))
		var se *StepError
		if !errors.As(err, &se) || !errors.Is(err, syscall.EEXIST) {
			t.Fatalf("attach into a container with an eth0: %v", err)
		}
		steps = append(steps, se.Step)
	}
	if steps[0] != steps[1] {
		t.Fatalf("the kernel failed step %s, the fake %s", steps[0], steps[1])
	}
	compare("refused")
}

// The real wiring, as the container sees it: eth0 with its address, MTU
// 1420 and the default route via the gateway, lo up; eth1 with the global
// address and the cluster route; the host route to eth1 with the node
// address as source and the effects' protocol; proxy ARP on eth1's host
// end. A copy of the journal at another home (in the same namespace, so it
// finds host ends marked with its journal) refuses the container before
// changing anything in it. A detach removes both ends.
func TestRealAttach(t *testing.T) {
	ctr := newTestContainer(t)
	h := realHarness(t, ownerA)
	h.service("web", "10.200.1.0/28")
	h.attachIno(ctr.pid, ctr.inode, "web", "10.200.1.2", "10.200.128.2")
	h.converge()
	addr := ctr.run(t, "ip", "-d", "addr")
	route := ctr.run(t, "ip", "route")
	for _, want := range []string{"inet 10.200.1.2/28", "inet 10.200.128.2/32", "mtu 1420",
		fmt.Sprintf("alias zlayer-overlayd ctr linux_pid:%d/%d s j=aaaaaaaaaaaa h=home1", ctr.pid, ctr.inode), "LOOPBACK,UP"} {
		if !strings.Contains(addr, want) {
			t.Fatalf("container addresses lack %q:\n%s", want, addr)
		}
	}
	for _, want := range []string{"default via 10.200.1.1 dev eth0", "10.200.0.0/16 dev eth1 scope link"} {
		if !strings.Contains(route, want) {
			t.Fatalf("container routes lack %q:\n%s", want, route)
		}
	}
	a := &Attachment{Key: fmt.Sprintf("linux_pid:%d", ctr.pid), NetnsInode: ctr.inode}
	hostRoute := runHere(t, "ip", "route", "show", "10.200.128.2")
	if want := "10.200.128.2 dev " + a.HostName(LegGlobal) + " proto 79 scope link src 10.200.0.1"; !strings.Contains(hostRoute, want) {
		t.Fatalf("host route %q, want %q", hostRoute, want)
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/conf/" + a.HostName(LegGlobal) + "/proxy_arp"); err != nil || strings.TrimSpace(string(b)) != "1" {
		t.Fatalf("proxy ARP: %q %v", b, err)
	}

	cp := newView(t)
	cp.r = newReconciler(testLog(t), cp.onDetach, ownerACopy, newKernel())
	defer cp.r.Close()
	cp.service("web", "10.200.1.0/28")
	cp.attachIno(ctr.pid, ctr.inode, "web", "10.200.1.2", "10.200.128.2")
	before := containerView(ctr.run(t, "ip", "-d", "addr") + ctr.run(t, "ip", "route"))
	err := keyErr(t, cp.full(), attachmentKey(a.Key))
	if !errors.Is(err, ErrNotOurs) || !strings.Contains(err.Error(), "at home home1") {
		t.Fatalf("the copy's pass: %v", err)
	}
	if after := containerView(ctr.run(t, "ip", "-d", "addr") + ctr.run(t, "ip", "route")); after != before {
		t.Fatalf("the copy changed the container:\n%s\n---\n%s", before, after)
	}
	if d := cp.detaches(); len(d) != 0 {
		t.Fatalf("the copy detached %q", d)
	}

	h.detach(ctr.pid)
	h.must(h.change(attachmentKey(a.Key)))
	if out := ctr.run(t, "ip", "-o", "link"); strings.Contains(out, "eth0") || strings.Contains(out, "eth1") {
		t.Fatalf("the container kept links after the detach:\n%s", out)
	}
}

// Kernel.Peer sees a container's end from the node: its name, state, mark
// and exactly its addresses (IPv4 and IPv6; not another link's), also
// after they change by hand.
func TestRealPeer(t *testing.T) {
	ctr := newTestContainer(t)
	h := realHarness(t, ownerA)
	h.service("web", "10.200.1.0/28")
	h.attachIno(ctr.pid, ctr.inode, "web", "10.200.1.2", "")
	h.converge()
	a := &Attachment{Key: fmt.Sprintf("linux_pid:%d", ctr.pid), NetnsInode: ctr.inode}
	k := h.r.k
	host, err := k.LinkByName(a.HostName(LegService))
	h.must(err)
	peer := func() (Link, []string) {
		c, addrs, err := k.Peer(host)
		h.must(err)
		var out []string
		for _, p := range addrs {
			if !p.Addr().IsLinkLocalUnicast() {
				out = append(out, p.String())
			}
		}
		sort.Strings(out)
		return c, out
	}
	c, addrs := peer()
	if c.Name != "eth0" || !c.Up || c.Alias != newMarks(ownerA).ctr(a, LegService) || strings.Join(addrs, " ") != "10.200.1.2/28" {
		t.Fatalf("peer %+v %v", c, addrs)
	}
	ctr.run(t, "ip", "addr", "add", "10.200.1.9/28", "dev", "eth0")
	ctr.run(t, "ip", "addr", "add", "fd00::9/64", "dev", "eth0", "nodad")
	ctr.run(t, "ip", "link", "add", "other", "type", "bridge")
	ctr.run(t, "ip", "addr", "add", "10.9.9.9/24", "dev", "other")
	if _, addrs := peer(); strings.Join(addrs, " ") != "10.200.1.2/28 10.200.1.9/28 fd00::9/64" {
		t.Fatalf("peer's addresses after adding some: %v", addrs)
	}
	// The container gone (its namespace, and the pair, with it), a look
	// through the old link is an error (its namespace id is no longer
	// valid), not an answer.
	ctr.stop()
	for i := 0; ; i++ {
		if _, _, err := k.Peer(host); err != nil {
			t.Logf("peer of a dead container: %v", err)
			break
		}
		if i == 100 {
			t.Fatal("the peer of a dead container still answers")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// containerView is ip's view of a container's links and routes without
// what changes by itself between two reads: IPv6 duplicate address
// detection finishing ("tentative" going), and iproute2's transient
// "Error: Peer netns reference is invalid." on stderr (a clean-clone run
// once read it in the second listing only).
func containerView(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "Error: Peer netns reference is invalid") {
			continue
		}
		keep = append(keep, strings.Replace(l, " tentative", "", 1))
	}
	return strings.Join(keep, "\n")
}
