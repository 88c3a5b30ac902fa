//go:build linux

package netlab

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/zlayer/overlayd/ipc"
)

// A detach and a re-attach of the same container that reach the bridge
// reconciler in one full pass (here: a check every millisecond, so nearly
// every pass is a full one) still move the container to its new address.
// (The full pass once compared only the container's identity and its host
// links, so it kept the old address while the state held the new one.)
func TestReattachInOneFullPass(t *testing.T) {
	l, nd, c := setUpNode(t, "--reconcile-interval", "1ms")
	call(t, c, ipc.SetupServiceOverlay{Service: "web", Mode: ipc.ModeShared})
	ctr, err := l.NewContainer()
	if err != nil {
		t.Fatal(err)
	}
	c2 := client(t, nd, nil)
	h := ipc.AttachHandle{Platform: ipc.PlatformLinuxPID, PID: uint32(ctr.PID)}
	call(t, c, ipc.AttachContainer{Handle: h, Service: "web"})
	for i := 0; i < 40; i++ {
		// Detach and attach sent together on two connections; the attach
		// may be decided first (a no-op) or second (a new address).
		var wg sync.WaitGroup
		wg.Add(2)
		for _, x := range []struct {
			c   *ipc.Client
			req ipc.Request
		}{{c, ipc.DetachContainer{Handle: h}}, {c2, ipc.AttachContainer{Handle: h, Service: "web"}}} {
			go func() {
				defer wg.Done()
				if _, err := x.c.Call(context.Background(), x.req); err != nil {
					t.Errorf("iteration %d: %s: %v", i, x.req.Op(), err)
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		// Make sure it ends attached, then compare state and kernel.
		r := call(t, c, ipc.AttachContainer{Handle: h, Service: "web"}).(ipc.Attached)
		out, err := ctr.Run(context.Background(), "ip", "-o", "-4", "addr", "show", "eth0")
		if err != nil || !strings.Contains(out, r.IP.String()+"/") || strings.Count(out, "inet ") != 1 {
			t.Fatalf("iteration %d: the state gives %s, eth0 holds:\n%s %v", i, r.IP, out, err)
		}
	}
}
