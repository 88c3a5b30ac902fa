//go:build linux

package bridge

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/zlayer/overlayd/effects"
)

// wiredWeb is the fake OS after TestFakeAttachWiresBothLegs's pass: a
// service bridge and a container on it that joins the global overlay.
const wiredWeb = `node
  tun ovl0 mtu 1420 up
    addr 10.200.0.1/16
  bridge web-b mtu 1420 mac 02:5a:47:b7:6d:22 up alias "zlayer-overlayd bridge web j=aaaaaaaaaaaa"
    addr 10.200.1.1/28
  veth zvcfa3a244g mtu 1420 up peer pid 100/eth1 alias "zlayer-overlayd attach linux_pid:100/4026531842 g j=aaaaaaaaaaaa"
  veth zvcfa3a244s mtu 1420 up master web-b peer pid 100/eth0 alias "zlayer-overlayd attach linux_pid:100/4026531842 s j=aaaaaaaaaaaa"
  route 10.200.128.2/32 dev zvcfa3a244g scope link src 10.200.0.1 proto 79
  sysctl net/ipv4/conf/zvcfa3a244g/proxy_arp=1
  sysctl net/ipv4/ip_forward=1
  sysctl net/ipv4/neigh/zvcfa3a244g/proxy_delay=0
pid 100
  veth eth0 mtu 1420 up peer node/zvcfa3a244s alias "zlayer-overlayd ctr linux_pid:100/4026531842 s j=aaaaaaaaaaaa h=home1"
    addr 10.200.1.2/28
  veth eth1 mtu 1420 up peer node/zvcfa3a244g alias "zlayer-overlayd ctr linux_pid:100/4026531842 g j=aaaaaaaaaaaa h=home1"
    addr 10.200.128.2/32
  lo up
  route 0.0.0.0/0 via 10.200.1.1 dev eth0
  route 10.200.0.0/16 dev eth1 scope link
`

// webHarness is a harness with wiredWeb converged.
func webHarness(t *testing.T) *harness {
	t.Helper()
	h := newHarness(t, ownerA)
	h.service("web", "10.200.1.0/28")
	h.container(100)
	h.attach(100, "web", "10.200.1.2", "10.200.128.2")
	h.converge()
	return h
}

// A service and a container that joins the global overlay, wired from
// nothing: the whole fake OS afterwards, marks included (the bridge and the
// host ends carry the journal, the container ends the journal and the
// home); the container was announced on its bridge; a second pass changes
// nothing (converge checks it).
func TestFakeAttachWiresBothLegs(t *testing.T) {
	h := webHarness(t)
	same(t, "the wired OS", h.k.render(), wiredWeb)
	if !slices.Contains(h.k.arps, "10.200.1.2 is-at "+h.ctrMAC(100, "eth0")+" on web-b") {
		t.Fatalf("no gratuitous ARP for the container: %q", h.k.arps)
	}
}

func (h *harness) ctrMAC(pid uint32, name string) string {
	h.k.mu.Lock()
	defer h.k.mu.Unlock()
	return h.k.procs[pid].byName(name).MAC.String()
}

// Drift made by hand is repaired by the next full pass, back to exactly the
// wired OS: a host veth deleted, the bridge deleted (its ports fall off),
// the bridge's address or MTU changed, a container's eth0 address changed
// or eth0 set down.
func TestFakeDriftRepair(t *testing.T) {
	for _, tc := range []struct {
		name  string
		drift func(h *harness)
	}{
		{"veth deleted", func(h *harness) { h.must(h.k.DelLink(Link{Name: "zvcfa3a244s"})) }},
		{"global veth deleted", func(h *harness) { h.must(h.k.DelLink(Link{Name: "zvcfa3a244g"})) }},
		{"bridge deleted", func(h *harness) { h.must(h.k.DelLink(Link{Name: "web-b"})) }},
		{"bridge address changed", func(h *harness) {
			br := h.link("web-b")
			h.must(h.k.DelAddr(br.Index, netip.MustParsePrefix("10.200.1.1/28")))
			h.must(h.k.ReplaceAddr(br.Index, netip.MustParsePrefix("192.168.7.1/24"), false))
		}},
		{"bridge MTU changed", func(h *harness) { h.must(h.k.SetMTU(h.link("web-b").Index, 9000)) }},
		{"container eth0 address changed", func(h *harness) {
			h.inCtr(100, func(ns Netns) {
				c, err := ns.LinkByName("eth0")
				h.must(err)
				h.must(ns.DelAddr(c.Index, netip.MustParsePrefix("10.200.1.2/28")))
				h.must(ns.ReplaceAddr(c.Index, netip.MustParsePrefix("10.200.1.9/28")))
			})
		}},
		{"container eth0 address added", func(h *harness) {
			h.inCtr(100, func(ns Netns) {
				c, err := ns.LinkByName("eth0")
				h.must(err)
				h.must(ns.ReplaceAddr(c.Index, netip.MustParsePrefix("10.200.1.9/28")))
			})
		}},
		{"container eth0 down", func(h *harness) {
			h.k.mu.Lock()
			h.k.procs[100].byName("eth0").Up = false
			h.k.mu.Unlock()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := webHarness(t)
			tc.drift(h)
			if h.k.render() == wiredWeb {
				t.Fatal("the drift changed nothing")
			}
			if err := h.full(); err != nil {
				t.Fatalf("repair pass: %v", err)
			}
			same(t, "after the repair", h.k.render(), wiredWeb)
			if d := h.detaches(); len(d) != 0 {
				t.Fatalf("a repair detached %q", d)
			}
		})
	}
}

func (h *harness) must(err error) {
	h.t.Helper()
	if err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) link(name string) Link {
	h.t.Helper()
	l, err := h.k.LinkByName(name)
	h.must(err)
	return l
}

// inCtr runs fn in a container's namespace, as someone other than the
// reconciler would.
func (h *harness) inCtr(pid uint32, fn func(Netns)) {
	ns, err := h.k.OpenNetns(pid)
	h.must(err)
	defer ns.Close()
	fn(ns)
}

// makeVeth makes a pair in the fake node, host end named host with alias,
// its peer in the container pid (0: in a namespace of its own).
func (h *harness) makeVeth(host, alias string, pid uint32, peer string) {
	h.t.Helper()
	if pid == 0 {
		pid = 9999
		if h.k.procs[pid] == nil {
			h.k.spawn(pid)
		}
	}
	ns, err := h.k.OpenNetns(pid)
	h.must(err)
	defer ns.Close()
	h.must(h.k.AddVeth(host, peer, 1500, 0, ns))
	if alias != "" {
		h.must(h.k.SetAlias(host, alias))
	}
}

// A full pass removes what carries this owner's mark and belongs to
// nothing (a bridge of a service that is gone, the legs of an attachment
// that is gone) and an unmarked veth with one of our names that no
// attachment wants (a crash between creating a pair and marking it). It
// leaves alone: another journal's marks, a mark from before journal ids
// (this journal is not that old), an alias that is not ours, names that
// are not of our form, and unmarked links that are not veths.
func TestFakeCleanup(t *testing.T) {
	h := webHarness(t)
	h.must(h.k.AddBridge("old-b", bridgeMAC("old-b")))
	h.must(h.k.SetAlias("old-b", "zlayer-overlayd bridge old j=aaaaaaaaaaaa"))
	h.makeVeth("zv11111111s", "zlayer-overlayd attach linux_pid:7/4026539999 s j=aaaaaaaaaaaa", 0, "p1")
	h.makeVeth("zv22222222s", "", 0, "p2") // crash leftover
	keep := []string{"theirs-b", "zv33333333s", "zv44444444s", "zv55555555s", "zv0badc0dex", "zv66666666g"}
	h.must(h.k.AddBridge("theirs-b", bridgeMAC("theirs-b")))
	h.must(h.k.SetAlias("theirs-b", "zlayer-overlayd bridge theirs j=bbbbbbbbbbbb"))
	h.makeVeth("zv33333333s", "zlayer-overlayd attach linux_pid:8/4026539999 s j=bbbbbbbbbbbb", 0, "p3")
	h.makeVeth("zv44444444s", "zlayer-overlayd attach linux_pid:9/4026539999 s", 0, "p4") // legacy
	h.makeVeth("zv55555555s", "not ours", 0, "p5")
	h.makeVeth("zv0badc0dex", "", 0, "p6") // not our pattern
	h.must(h.k.AddBridge("zv66666666g", bridgeMAC("x")))
	h.k.mutations()
	if err := h.full(); err != nil {
		t.Fatal(err)
	}
	got := h.k.mutations()
	slices.Sort(got)
	want := []string{"dellink old-b", "dellink zv11111111s", "dellink zv22222222s"}
	if !slices.Equal(got, want) {
		t.Fatalf("the pass did %q, want %q", got, want)
	}
	for _, name := range keep {
		if _, err := h.k.LinkByName(name); err != nil {
			t.Errorf("%s was removed: %v", name, err)
		}
	}
	same(t, "our own links", withoutStrangers(h.k.render()), wiredWeb)
}

// withoutStrangers drops the links of TestFakeCleanup's strangers and the
// namespace holding their peers.
func withoutStrangers(render string) string {
	var b strings.Builder
	skip := false
	for _, line := range strings.SplitAfter(render, "\n") {
		if !strings.HasPrefix(line, " ") {
			skip = strings.HasPrefix(line, "pid 9999")
		}
		if skip || strings.Contains(line, "theirs-b") || strings.Contains(line, "zv3333") || strings.Contains(line, "zv4444") ||
			strings.Contains(line, "zv5555") || strings.Contains(line, "zv0bad") || strings.Contains(line, "zv6666") {
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}

// A detach removes the container's legs (its ends go with them) and nothing
// else; the bridge stays. A service torn down takes its bridge.
func TestFakeDetachAndTeardown(t *testing.T) {
	h := webHarness(t)
	h.container(101)
	h.attach(101, "web", "10.200.1.3", "")
	if err := h.change("attachment/linux_pid:101"); err != nil {
		t.Fatal(err)
	}
	h.detach(101)
	h.k.mutations()
	if err := h.change("attachment/linux_pid:101"); err != nil {
		t.Fatal(err)
	}
	if got := h.k.mutations(); len(got) != 1 || !strings.HasPrefix(got[0], "dellink zv") {
		t.Fatalf("the detach did %q", got)
	}
	same(t, "after the detach", strings.Replace(h.k.render(), "pid 101\n  lo up\n", "", 1), wiredWeb)
	h.mu.Lock()
	delete(h.st.Services, "web")
	h.mu.Unlock()
	h.detach(100)
	if err := h.change("attachment/linux_pid:100", "service/web"); err != nil {
		t.Fatal(err)
	}
	if node := section(h.k.render(), "node"); strings.Contains(node, "web-b") || strings.Contains(node, "veth") {
		t.Fatalf("after the teardown:\n%s", node)
	}
}

// A container found gone is detached (journaled through the Detacher), its
// links removed; a PID reused by a process in another namespace is the
// same: detached, and the new process is not wired.
func TestFakeGoneContainers(t *testing.T) {
	h := webHarness(t)
	h.container(101)
	h.attach(101, "web", "10.200.1.3", "")
	h.converge()
	h.k.kill(100)
	h.k.kill(101)
	ino := h.k.spawn(101) // the PID reused, another namespace
	if err := h.full(); err != nil {
		t.Fatal(err)
	}
	want := []string{"linux_pid:100: process 100 is gone",
		fmt.Sprintf("linux_pid:101: pid 101 now lives in another network namespace (inode %d, attached in 4026531843)", ino)}
	if got := h.detaches(); !slices.Equal(got, want) {
		t.Fatalf("detaches %q, want %q", got, want)
	}
	h.detach(100)
	h.detach(101)
	if err := h.full(); err != nil {
		t.Fatal(err)
	}
	if r := h.k.render(); strings.Contains(r, "veth") {
		t.Fatalf("links left:\n%s", r)
	}
}

// The failpoint between creating a pair and marking it: when it is hit the
// pair exists and its host end is unmarked. A crash there (every kernel
// call fails from then on, as for a daemon killed at that line) leaves the
// unmarked pair; after the restart a full pass adopts and marks it when
// the attachment is in the state, and removes it when it is not.
func TestFakeCrashAfterVethCreate(t *testing.T) {
	for _, inState := range []bool{true, false} {
		t.Run(fmt.Sprintf("attachment in the state %v", inState), func(t *testing.T) {
			k := newFakeKernel()
			h := newHarnessOn(t, k, ownerA)
			h.service("web", "10.200.1.0/28")
			h.container(100)
			h.converge()
			h.attach(100, "web", "10.200.1.2", "10.200.128.2")
			var at string
			effects.Failpoint = func(name string) {
				if name != "bridge/after-veth-create" || at != "" {
					return
				}
				k.mu.Lock()
				defer k.mu.Unlock()
				l := k.node.byName("zvcfa3a244s")
				if l == nil {
					at = "absent"
				} else {
					at = fmt.Sprintf("present alias %q", l.Alias)
				}
				k.crashed = true
			}
			defer func() { effects.Failpoint = nil }()
			if err := h.change("attachment/linux_pid:100"); err == nil {
				t.Fatal("the attach went on after the crash")
			}
			if at != `present alias ""` {
				t.Fatalf("at the failpoint the host end was %s, want it made and unmarked", at)
			}
			effects.Failpoint = nil
			k.mu.Lock()
			k.crashed = false
			k.mu.Unlock()
			if n := strings.Count(h.k.render(), "veth zvcfa3a244s mtu 1420 up master web-b peer pid 100/eth0\n"); n != 1 {
				t.Fatalf("the crash did not leave the unmarked pair:\n%s", h.k.render())
			}
			// The restart: a new reconciler over the same kernel.
			h2 := newHarnessOn(t, k, ownerA)
			h2.service("web", "10.200.1.0/28")
			if inState {
				h2.attach(100, "web", "10.200.1.2", "10.200.128.2")
			}
			h2.converge()
			if inState {
				same(t, "after the restart", h2.k.render(), wiredWeb)
			} else if r := h2.k.render(); strings.Contains(r, "veth") {
				t.Fatalf("the leftover stayed:\n%s", r)
			}
		})
	}
}

var errCrashed = errors.New("the daemon was killed here")

// A failed step of an attach deletes the pairs that attach created, and
// nothing else: neither the bridge, another container's links, nor a leg
// of the same container that existed before.
func TestFakeRollback(t *testing.T) {
	for _, tc := range []struct {
		name      string
		op, on    string
		err       error
		wantStep  string
		globalWas bool // the container had its service leg already; this attach adds eth1
	}{
		{"eth1 address", "ns.addaddr", "eth1", syscall.ENOBUFS, "eth1", false},
		{"default route", "ns.route", "0.0.0.0/0", syscall.ENETUNREACH, "route", false},
		{"proxy ARP sysctl full", "sysctl", "net/ipv4/conf/zvcfa3a244g/proxy_arp", syscall.ENOSPC, "eth1", false},
		{"host route", "route", "10.200.128.2/32", syscall.ENOBUFS, "route", false},
		{"eth1 of an adopted container", "ns.addaddr", "eth1", syscall.ENOBUFS, "eth1", true},
		{"host end mark", "setalias", "zvcfa3a244g", syscall.ENOBUFS, "veth", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, ownerA)
			h.service("web", "10.200.1.0/28")
			h.container(100)
			h.container(101)
			h.attach(101, "web", "10.200.1.3", "10.200.128.3") // a neighbour
			if tc.globalWas {
				h.attach(100, "web", "10.200.1.2", "")
			}
			h.converge()
			before := h.k.render()
			h.attach(100, "web", "10.200.1.2", "10.200.128.2")
			h.k.fail(tc.op, tc.on, tc.err, 1)
			h.k.mutations()
			err := h.change("attachment/linux_pid:100")
			var se *StepError
			var ke effects.KeyErrors
			if !errors.As(err, &ke) || !errors.As(ke["attachment/linux_pid:100"], &se) || se.Step != tc.wantStep || !errors.Is(se, tc.err) {
				t.Fatalf("err = %v, want a StepError %q wrapping %v for the attachment", err, tc.wantStep, tc.err)
			}
			after := h.k.render()
			if tc.globalWas {
				// The service leg stays as it was; only the new pair went.
				same(t, "after the rollback", after, before)
			} else {
				// Nothing of container 100 is left in the node or in it
				// (but its lo, brought up, is not put down again).
				same(t, "after the rollback", after, strings.Replace(before, "pid 100\n", "pid 100\n  lo up\n", 1))
			}
			for _, m := range h.k.mutations() {
				if strings.HasPrefix(m, "dellink") && !strings.HasPrefix(m, "dellink zvcfa3a244") {
					t.Fatalf("the rollback deleted something it had not made: %s", m)
				}
			}
			// Once the fault is gone the same attach works.
			if err := h.change("attachment/linux_pid:100"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A periodic pass looks at most at peerChecks containers' ends, in turn:
// with more containers than that, each one is still looked at within a
// few passes, and a drift in any of them is repaired.
func TestFakeContainerChecksRotate(t *testing.T) {
	h := newHarness(t, ownerA)
	h.service("web", "10.200.4.0/24")
	n := peerChecks + 6
	for i := range n {
		pid := uint32(200 + i)
		h.container(pid)
		h.attach(pid, "web", fmt.Sprintf("10.200.4.%d", 2+i), "")
	}
	h.converge()
	for _, victim := range []uint32{200, 200 + uint32(n) - 1, 230} {
		h.inCtr(victim, func(ns Netns) {
			c, err := ns.LinkByName("eth0")
			h.must(err)
			h.must(ns.ReplaceAddr(c.Index, netip.MustParsePrefix("10.200.4.250/24")))
		})
		repaired := false
		for pass := 0; pass < 2 && !repaired; pass++ {
			h.k.calls("peer")
			h.must(h.full())
			if c := h.k.calls("peer"); c > peerChecks {
				t.Fatalf("a pass looked at %d containers' ends", c)
			}
			repaired = !strings.Contains(section(h.k.render(), fmt.Sprintf("pid %d", victim)), "10.200.4.250")
		}
		if !repaired {
			t.Fatalf("the drift in container %d was not repaired within 2 passes", victim)
		}
	}
}
