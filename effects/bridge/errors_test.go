//go:build linux

package bridge

import (
	"errors"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/zlayer/overlayd/effects"
)

// strayHarness is webHarness plus a stray of ours (the legs of an
// attachment the state does not have) and a dead container still in the
// state: a pass that trusts its answers removes the first and detaches the
// second.
func strayHarness(t *testing.T) *harness {
	h := webHarness(t)
	h.makeVeth("zv11111111s", "zlayer-overlayd attach linux_pid:7/4026539999 s j=aaaaaaaaaaaa", 0, "p1")
	h.container(102)
	h.attach(102, "web", "10.200.1.4", "")
	h.converge()
	h.k.mutations()
	return h
}

func noDeletes(t *testing.T, h *harness) {
	t.Helper()
	for _, m := range h.k.mutations() {
		if strings.HasPrefix(m, "dellink") {
			t.Fatalf("deleted on an answer that does not say so: %s", m)
		}
	}
	if d := h.detaches(); len(d) != 0 {
		t.Fatalf("detached on an answer that does not say so: %q", d)
	}
}

// EMFILE on the link dump: nothing is deleted (no list, no strays), no
// container is detached, the pass returns the error; the retry does the
// work.
func TestFakeLinkDumpEMFILE(t *testing.T) {
	h := strayHarness(t)
	before := h.k.render()
	h.k.fail("links", "", syscall.EMFILE, 1)
	err := h.full()
	if !errors.Is(err, syscall.EMFILE) {
		t.Fatalf("pass = %v, want EMFILE", err)
	}
	noDeletes(t, h)
	same(t, "after a pass whose dump failed", h.k.render(), before)
	if err := h.full(); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if _, err := h.k.LinkByName("zv11111111s"); !notFound(err) {
		t.Fatalf("the retry did not remove the stray: %v", err)
	}
}

// EMFILE (or any error but "no such process") on the /proc check of a
// container: it is not taken as gone (no detach, its links stay, nothing in
// it changes), the pass returns an error for that attachment and the retry
// finds it alive. The same for the periodic look at the containers' ends.
func TestFakeProcCheckEMFILE(t *testing.T) {
	for _, tc := range []struct{ op, target string }{{"netnsinode", "100"}, {"peer", "zvcfa3a244s"}} {
		t.Run(tc.op, func(t *testing.T) {
			h := strayHarness(t)
			h.k.kill(102) // really gone: still detached in the same pass
			h.k.mutations()
			before := h.k.render()
			h.k.fail(tc.op, tc.target, syscall.EMFILE, 1)
			err := h.full()
			var ke effects.KeyErrors
			if !errors.As(err, &ke) || !errors.Is(ke["attachment/linux_pid:100"], syscall.EMFILE) {
				t.Fatalf("pass = %v, want EMFILE for linux_pid:100", err)
			}
			if got := h.detaches(); !slices.Equal(got, []string{"linux_pid:102: process 102 is gone"}) {
				t.Fatalf("detaches %q: only the container that is really gone", got)
			}
			if !strings.Contains(section(h.k.render(), "node"), "zvcfa3a244s") || section(h.k.render(), "pid 100") != section(before, "pid 100") {
				t.Fatalf("container 100 was touched:\n%s", h.k.render())
			}
			h.mu.Lock()
			h.detached = nil
			h.mu.Unlock()
			h.detach(102)
			if err := h.full(); err != nil {
				t.Fatalf("retry: %v", err)
			}
			if d := h.detaches(); len(d) != 0 {
				t.Fatalf("the retry detached %q", d)
			}
		})
	}
}

// EMFILE opening a container's namespace during an attach: the attach
// fails naming the step, nothing is made, nothing is detached.
func TestFakeAttachNetnsEMFILE(t *testing.T) {
	h := webHarness(t)
	h.container(101)
	before := h.k.render()
	h.attach(101, "web", "10.200.1.3", "")
	h.k.fail("opennetns", "101", syscall.EMFILE, 1)
	err := keyErr(t, h.change("attachment/linux_pid:101"), "attachment/linux_pid:101")
	var se *StepError
	if !errors.As(err, &se) || se.Step != "netns" || !errors.Is(err, syscall.EMFILE) {
		t.Fatalf("attach = %v, want a netns StepError with EMFILE", err)
	}
	same(t, "after the failed attach", h.k.render(), before)
	noDeletes(t, h)
}

// EBUSY or EEXIST on the veth create: the attach fails naming the step;
// nothing is made in the node or the container; the retry works.
func TestFakeVethCreateBusy(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EBUSY, syscall.EEXIST} {
		t.Run(errno.Error(), func(t *testing.T) {
			h := webHarness(t)
			h.container(101)
			before := h.k.render()
			h.attach(101, "web", "10.200.1.3", "10.200.128.3")
			h.k.fail("addveth", "", errno, 1)
			err := keyErr(t, h.change("attachment/linux_pid:101"), "attachment/linux_pid:101")
			var se *StepError
			if !errors.As(err, &se) || se.Step != "veth" || !errors.Is(err, errno) {
				t.Fatalf("attach = %v, want a veth StepError with %v", err, errno)
			}
			same(t, "after the failed attach", h.k.render(), before)
			if err := h.change("attachment/linux_pid:101"); err != nil {
				t.Fatalf("retry: %v", err)
			}
		})
	}
}

// A container that already has an eth0 (not ours): EEXIST from the
// kernel; the attach fails naming the veth step and its eth0 is left as it
// was.
func TestFakeContainerHasEth0(t *testing.T) {
	h := webHarness(t)
	h.container(101)
	h.k.mu.Lock()
	h.k.procs[101].add(&fakeLink{Link: Link{Name: "eth0", Kind: "dummy", MTU: 1500}})
	h.k.mu.Unlock()
	before := h.k.render()
	h.attach(101, "web", "10.200.1.3", "")
	err := keyErr(t, h.change("attachment/linux_pid:101"), "attachment/linux_pid:101")
	var se *StepError
	if !errors.As(err, &se) || se.Step != "veth" || !errors.Is(err, syscall.EEXIST) || !strings.Contains(err.Error(), "already has an eth0") {
		t.Fatalf("attach = %v", err)
	}
	same(t, "after the refused attach", h.k.render(), before)
}

// A service bridge deleted by hand (the kernel answers ENODEV for it): an
// attach to it makes the bridge again and goes on; an ENODEV for a bridge
// that does exist (an index lookup that raced) makes no second one.
func TestFakeMissingBridgeRecreated(t *testing.T) {
	h := webHarness(t)
	h.must(h.k.DelLink(Link{Name: "web-b"}))
	h.container(101)
	h.attach(101, "web", "10.200.1.3", "")
	if err := h.change("attachment/linux_pid:101"); err != nil {
		t.Fatalf("attach with the bridge gone: %v", err)
	}
	node := section(h.k.render(), "node")
	if !strings.Contains(node, `bridge web-b mtu 1420 mac 02:5a:47:b7:6d:22 up alias "zlayer-overlayd bridge web j=aaaaaaaaaaaa"`) ||
		!strings.Contains(node, "master web-b peer pid 101/eth0") {
		t.Fatalf("bridge not made again, or the container not on it:\n%s", node)
	}
	// The periodic pass puts the older container back on it.
	if err := h.full(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(section(h.k.render(), "node"), "master web-b peer pid 100/eth0") {
		t.Fatalf("container 100 not back on its bridge:\n%s", h.k.render())
	}

	h.container(103)
	h.attach(103, "web", "10.200.1.5", "")
	raced := h.k.fail("index", "web-b", syscall.ENODEV, 1)
	h.k.mutations()
	if err := h.change("attachment/linux_pid:103"); err != nil {
		t.Fatal(err)
	}
	if !h.k.spent(raced) {
		t.Fatal("the attach never looked the bridge up: the raced lookup was not tested")
	}
	for _, m := range h.k.mutations() {
		if strings.HasPrefix(m, "addbridge") {
			t.Fatalf("a second bridge: %s", m)
		}
	}
}

// ENOSPC writing a sysctl: the bridge's forwarding names the sysctl and
// the cause (and the pass fails for that service); eth1's proxy ARP fails
// the attach naming the step, and both pairs it made are deleted.
func TestFakeSysctlENOSPC(t *testing.T) {
	h := newHarness(t, ownerA)
	h.service("web", "10.200.1.0/28")
	h.k.fail("sysctl", "net/ipv4/ip_forward", syscall.ENOSPC, 1)
	err := h.full()
	var ke effects.KeyErrors
	if !errors.As(err, &ke) || !errors.Is(ke["service/web"], syscall.ENOSPC) || !strings.Contains(err.Error(), "net/ipv4/ip_forward") {
		t.Fatalf("pass = %v, want ENOSPC naming net/ipv4/ip_forward for service/web", err)
	}
	h.converge()
	before := h.k.render()
	h.container(100)
	h.attach(100, "web", "10.200.1.2", "10.200.128.2")
	h.k.fail("sysctl", "net/ipv4/neigh/zvcfa3a244g/proxy_delay", syscall.ENOSPC, 1)
	err = keyErr(t, h.change("attachment/linux_pid:100"), "attachment/linux_pid:100")
	var se *StepError
	if !errors.As(err, &se) || se.Step != "eth1" || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("attach = %v, want an eth1 StepError with ENOSPC", err)
	}
	if got := section(h.k.render(), "node"); got != section(before, "node") {
		t.Fatalf("the failed attach left links:\n%s", got)
	}
	if strings.Contains(section(h.k.render(), "pid 100"), "eth") {
		t.Fatalf("the failed attach left links in the container:\n%s", h.k.render())
	}
}

// The node's overlay address is not up yet (the WireGuard device is made
// by another reconciler): the host route to eth1 goes without a preferred
// source, and the attach succeeds.
func TestFakeHostRouteWithoutNodeAddress(t *testing.T) {
	h := newHarness(t, ownerA)
	h.k.mu.Lock()
	h.k.node.byName("ovl0").addrs = nil
	h.k.mu.Unlock()
	h.service("web", "10.200.1.0/28")
	h.container(100)
	h.attach(100, "web", "10.200.1.2", "10.200.128.2")
	h.converge()
	if !strings.Contains(h.k.render(), "route 10.200.128.2/32 dev zvcfa3a244g scope link proto 79\n") {
		t.Fatalf("host route:\n%s", h.k.render())
	}
}

// keyErr is the error a pass returned for one change key (the KeyErrors
// inside it).
func keyErr(t *testing.T, err error, key string) error {
	t.Helper()
	var ke effects.KeyErrors
	if !errors.As(err, &ke) || ke[key] == nil {
		t.Fatalf("pass = %v, want an error for %s", err, key)
	}
	return ke[key]
}
