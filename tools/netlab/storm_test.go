//go:build linux

package netlab

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zlayer/overlayd/tools/testseed"

	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/projections"
)

func stateOf(t *testing.T, nd *Node) *projections.State {
	t.Helper()
	st, err := projections.ParseCanonicalJSON([]byte(ctlState(t, nd)))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// A storm of attaches and detaches, with the daemon killed (SIGKILL) at
// random points and containers dying on their own, over several rounds:
// after each restart no veth, bridge or address leaks, every live
// container is reachable, every dead one is detached, and the journal
// verifies.
func TestAttachStormWithKills(t *testing.T) {
	rounds := 3
	if testing.Short() {
		rounds = 1
	}
	l, nd, c := setUpNode(t, "--reconcile-interval", "500ms")
	ctx := context.Background()
	services := []string{"web", "db", "cache"}
	for _, s := range services {
		call(t, c, ipc.SetupServiceOverlay{Service: s, Mode: ipc.ModeShared})
	}
	const poolSize = 24 // 8 per service: within a /28's 13 addresses
	pool := make([]*Container, poolSize)
	var poolMu sync.Mutex
	for i := range pool {
		pool[i] = newContainer(t, l)
	}
	// The seed replays the choices (containers, commands, when to kill);
	// how the clients' commands interleave is the scheduler's.
	r := rand.New(rand.NewSource(testseed.New(t)))
	const perRound = 200
	var ops atomic.Int64
	// Commands in flight now, and summed over the moments of the kills.
	var inFlight, killedDuring atomic.Int64
	for round := 0; round < rounds; round++ {
		// Some containers die on their own (no detach); new ones replace them.
		poolMu.Lock()
		for k := 0; k < 2; k++ {
			i := r.Intn(poolSize)
			pool[i].Kill()
			pool[i] = newContainer(t, l)
		}
		poolMu.Unlock()
		// 200 attaches and detaches from 8 clients; the daemon is killed
		// with SIGKILL at two random points of the storm, while the other
		// clients' commands are in flight, and restarted.
		var done atomic.Int64
		kills := []int64{int64(20 + r.Intn(80)), int64(100 + r.Intn(80))}
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func(seed int64) {
				defer wg.Done()
				rr := rand.New(rand.NewSource(seed))
				var cl *ipc.Client
				defer func() {
					if cl != nil {
						cl.Close()
					}
				}()
				for done.Load() < perRound {
					if cl == nil {
						var err error
						if cl, err = nd.Client(nil); err != nil {
							t.Error(err)
							return
						}
					}
					i := rr.Intn(poolSize)
					poolMu.Lock()
					ctr := pool[i]
					poolMu.Unlock()
					h := ipc.AttachHandle{Platform: ipc.PlatformLinuxPID, PID: uint32(ctr.PID)}
					var req ipc.Request = ipc.AttachContainer{Handle: h, Service: services[i%len(services)], JoinGlobal: true}
					if rr.Intn(3) == 0 {
						req = ipc.DetachContainer{Handle: h}
					}
					inFlight.Add(1)
					_, err := cl.Call(ctx, req)
					inFlight.Add(-1)
					if err != nil {
						var re *ipc.RemoteError
						if remote := errors.As(err, &re); !remote || strings.Contains(re.Message, "stopping") || strings.Contains(re.Message, "shutting down") {
							cl.Close() // the daemon died under us: reconnect
							cl = nil
							continue
						}
						if !strings.Contains(re.Message, "does not exist") && !strings.Contains(re.Message, "netns") {
							st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", ctr.PID))
							t.Errorf("round %d: %s: %s (container alive %v; status %.200s)", round, req.Op(), re.Message, procAlive(ctr.PID), st)
						}
					}
					n := done.Add(1)
					ops.Add(1)
					for _, k := range kills {
						if n == k {
							killedDuring.Add(inFlight.Load())
							nd.Kill9()
							if err := nd.Start(); err != nil {
								t.Error(err)
								return
							}
						}
					}
				}
			}(r.Int63())
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		// Converged: every attachment belongs to a live container and is
		// wired; dead ones are gone; links match the state exactly.
		var st *projections.State
		waitFor(t, 10*time.Second, "the node to converge", func() bool {
			st = stateOf(t, nd)
			veths, bridges := ownedLinks(t, nd)
			live := 0
			for _, a := range st.Attachments {
				if !alive(int(a.Handle.PID)) {
					return false // a dead container not detached yet
				}
				live++
			}
			return len(veths) == 2*live && len(bridges) == len(services)
		})
		if err := st.CheckInvariants(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		for _, a := range st.Attachments {
			var ctr *Container
			poolMu.Lock()
			for _, p := range pool {
				if p.PID == int(a.Handle.PID) {
					ctr = p
				}
			}
			poolMu.Unlock()
			if ctr == nil {
				t.Fatalf("round %d: attachment %s belongs to no live container", round, a.Handle.Key())
			}
			if out, err := ctr.Run(ctx, "ip", "-o", "addr", "show", "eth0"); err != nil || !strings.Contains(out, a.IP.String()+"/28") {
				cl, _ := ctr.Run(ctx, "ip", "-o", "link")
				bl, _ := nd.Run(ctx, "sh", "-c", "ip -o -d link show | grep -o '^[0-9]*: [^:]*\\|alias .*'")
				t.Fatalf("round %d: container %d (%+v) does not hold %s:\n%s %v\ncontainer links:\n%s\nnode links:\n%s\nlog:\n%s", round, ctr.PID, a, a.IP, out, err, cl, bl, nd.Logs())
			}
			if _, err := nd.Run(ctx, "ping", "-c", "1", "-W", "1", a.IP.String()); err != nil {
				ca, _ := ctr.Run(ctx, "ip", "-br", "addr")
				cn, _ := ctr.Run(ctx, "ip", "neigh")
				nn, _ := nd.Run(ctx, "ip", "neigh")
				bl, _ := nd.Run(ctx, "sh", "-c", "ip -o -d link show | grep -o '^[0-9]*: [^:]*\\|alias .*'")
				cl, _ := ctr.Run(ctx, "ip", "-o", "link")
				ca += cl
				t.Fatalf("round %d: container %s (%d, %+v) unreachable: %v\ncontainer:\n%s%s\nnode neigh:\n%s\nnode links:\n%s",
					round, a.IP, ctr.PID, a, err, ca, cn, nn, bl)
			}
		}
		rep := call(t, c2(t, nd), ipc.JournalVerify{}).(ipc.JournalReport)
		if !rep.OK {
			t.Fatalf("round %d: journal verify: %v", round, rep.Problems)
		}
		t.Logf("round %d: %d commands so far, %d attachments live, journal at %d; %d commands were in flight at the kills so far", round, ops.Load(), len(st.Attachments), st.Seq, killedDuring.Load())
	}
	if killedDuring.Load() == 0 {
		t.Fatal("no kill landed while a command was in flight: the storm did not test a crash in the middle of an attach or detach")
	}
}

func c2(t *testing.T, nd *Node) *ipc.Client { return client(t, nd, nil) }

func alive(pid int) bool { return procAlive(pid) }
