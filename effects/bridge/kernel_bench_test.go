//go:build linux

package bridge

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/zlayer/overlayd/effects"
)

// The kernel's share of an attach and a detach, without the daemon, for
// the notes in BENCHMARKS.md (root):
//
//	go test -run x -bench Kernel -benchtime 200x ./effects/bridge
//
// It runs in two namespaces it creates ("node" and "container") and
// deletes them afterwards.
func BenchmarkKernel(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: creates network namespaces")
	}
	nodeName, ctrName := fmt.Sprintf("ovb-node-%d", os.Getpid()), fmt.Sprintf("ovb-ctr-%d", os.Getpid())
	for _, n := range []string{nodeName, ctrName} {
		if out, err := exec.Command("ip", "netns", "add", n).CombinedOutput(); err != nil {
			b.Fatalf("ip netns add %s: %v %s", n, err, out)
		}
		defer exec.Command("ip", "netns", "del", n).Run()
	}
	node, err := netns.GetFromName(nodeName)
	if err != nil {
		b.Fatal(err)
	}
	defer node.Close()
	ctr, err := netns.GetFromName(ctrName)
	if err != nil {
		b.Fatal(err)
	}
	defer ctr.Close()
	// Each benchmark runs on its own goroutine: it locks its OS thread
	// into the node namespace and puts it back.
	inNode := func(b *testing.B) {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			b.Fatal(err)
		}
		if err := netns.Set(node); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			netns.Set(orig)
			orig.Close()
			runtime.UnlockOSThread()
		})
	}
	h, err := netlink.NewHandleAt(node)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	la := netlink.NewLinkAttrs()
	la.Name = "ovbbr"
	if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil {
		b.Fatal(err)
	}
	br, err := h.LinkByName("ovbbr")
	if err != nil {
		b.Fatal(err)
	}

	// One request: host end up on the bridge, peer in the container.
	b.Run("veth-create", func(b *testing.B) {
		inNode(b)
		for range b.N {
			if err := createVeth("ovbv", "eth0", effects.MTU, br.Attrs().Index, ctr); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := delLink(Link{Name: "ovbv"}); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
	// Deleting a pair: what a detach waits for.
	b.Run("veth-delete", func(b *testing.B) {
		inNode(b)
		for range b.N {
			b.StopTimer()
			if err := createVeth("ovbv", "eth0", effects.MTU, br.Attrs().Index, ctr); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if err := delLink(Link{Name: "ovbv"}); err != nil {
				b.Fatal(err)
			}
		}
	})
	// A packet socket opened and closed, as the first design did per
	// attach for its gratuitous ARP; the daemon now keeps one open.
	b.Run("packet-socket-open-close", func(b *testing.B) {
		inNode(b)
		for range b.N {
			fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				b.Fatal(err)
			}
			unix.Close(fd)
		}
	})
}
