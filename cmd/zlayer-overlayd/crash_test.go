//go:build linux

package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zlayer/overlayd/tools/testseed"

	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/projections"
)

// ledger records what the daemon acknowledged.
type ledger struct {
	mu       sync.Mutex
	dns      map[string]netip.Addr
	reserved map[netip.Addr]bool
	unsure   map[netip.Addr]bool // a release was in flight when the daemon died
	peers    map[string]netip.Prefix
	acked    int
}

func testKey(client, seq int) string {
	var b [32]byte
	b[0], b[1], b[2], b[3] = 0xC7, byte(client), byte(seq), byte(seq>>8)
	b[31] = 0x55
	return base64.StdEncoding.EncodeToString(b[:])
}

// load runs one client until its connection dies. seq keeps the client's
// counter across rounds so names and keys stay unique.
func (l *ledger) load(t *testing.T, c *ipc.Client, client int, seq *int, r *rand.Rand) {
	ctx := context.Background()
	var mine []netip.Addr
	for {
		*seq++
		s := *seq
		var err error
		switch op := r.Intn(10); {
		case op < 4:
			name := fmt.Sprintf("c%d-%d.crash.test", client, s)
			ip := netip.AddrFrom4([4]byte{10, 99, byte(client), byte(s)})
			if _, err = c.Call(ctx, ipc.RegisterDNS{Name: name, IP: ipc.AddrOf(ip)}); err == nil {
				l.mu.Lock()
				l.dns[name] = ip
				l.acked++
				l.mu.Unlock()
			}
		case op < 7:
			var resp ipc.Response
			if resp, err = c.Call(ctx, ipc.AllocateIP{JoinGlobal: true}); err == nil {
				ip := resp.(ipc.IPResult).IP.Addr
				l.mu.Lock()
				if l.reserved[ip] {
					t.Errorf("allocate_ip handed out %v twice", ip)
				}
				l.reserved[ip] = true
				l.acked++
				l.mu.Unlock()
				mine = append(mine, ip)
			}
		case op < 8 && len(mine) > 0:
			ip := mine[0]
			mine = mine[1:]
			l.mu.Lock()
			delete(l.reserved, ip)
			l.unsure[ip] = true
			l.mu.Unlock()
			if _, err = c.Call(ctx, ipc.ReleaseIP{IP: ipc.AddrOf(ip)}); err == nil {
				l.mu.Lock()
				delete(l.unsure, ip)
				l.acked++
				l.mu.Unlock()
			}
		case op < 9:
			key := testKey(client, s)
			pfx := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(128 + client), byte(s >> 8), byte(s)}), 32)
			if _, err = c.Call(ctx, ipc.AddPeer{PeerSpec: ipc.PeerSpec{PublicKey: key, Endpoint: "192.0.2.1:51820", AllowedIPs: pfx.String(), PersistentKeepaliveSecs: 25}}); err == nil {
				l.mu.Lock()
				l.peers[key] = pfx
				l.acked++
				l.mu.Unlock()
			}
		default:
			// A command of several events: teardown of a service with
			// reservations is journaled in one atomic append. The first
			// teardown clears what a kill left of this client's previous
			// sequence (acknowledged reservations stay): without it five
			// interrupted sequences fill the service's /28.
			svc := fmt.Sprintf("t%d", client)
			if _, err = c.Call(ctx, ipc.TeardownServiceOverlay{Service: svc}); err != nil {
				break
			}
			if _, err = c.Call(ctx, ipc.SetupServiceOverlay{Service: svc, Mode: ipc.ModeShared}); err == nil {
				for i := 0; i < 3 && err == nil; i++ {
					_, err = c.Call(ctx, ipc.AllocateIP{Service: svc})
				}
				if err == nil {
					_, err = c.Call(ctx, ipc.TeardownServiceOverlay{Service: svc})
				}
			}
		}
		if err != nil {
			var re *ipc.RemoteError
			if strings.Contains(err.Error(), "no free address") || (asRemote(err, &re) && !strings.Contains(re.Message, "stopping")) {
				t.Errorf("client %d: refused: %v", client, err)
			}
			return
		}
	}
}

func asRemote(err error, re **ipc.RemoteError) bool { return errors.As(err, re) }

// 32 clients send mutating commands while the daemon is killed with
// SIGKILL at random moments: after each restart every acknowledged command
// is in the state, the state keeps its invariants, the journal ends on a
// whole command and verifies.
func TestCrashUnderLoadLosesNoAcknowledgedCommand(t *testing.T) {
	rounds, clients := 25, 32
	if testing.Short() {
		rounds = 5
	}
	n := newNode(t, "--snapshot-every", "500")
	n.start()
	c := n.client()
	call(t, c, ipc.SetupGlobalOverlay{Deployment: "crash", InstanceID: "1", ClusterCIDR: "10.200.0.0/16", SliceCIDR: strp("10.200.0.0/18"), WgPort: 51820})
	c.Close()
	l := &ledger{dns: map[string]netip.Addr{}, reserved: map[netip.Addr]bool{}, unsure: map[netip.Addr]bool{}, peers: map[string]netip.Prefix{}}
	seqs := make([]int, clients)
	// The seed replays each client's commands and the moments of the
	// kills; how the commands interleave is the scheduler's.
	r := rand.New(rand.NewSource(testseed.New(t)))
	for round := 0; round < rounds; round++ {
		var wg sync.WaitGroup
		for i := 0; i < clients; i++ {
			cl := n.client()
			wg.Add(1)
			go func(i int, seed int64) {
				defer wg.Done()
				defer cl.Close()
				l.load(t, cl, i, &seqs[i], rand.New(rand.NewSource(seed)))
			}(i, r.Int63())
		}
		time.Sleep(time.Duration(20+r.Intn(300)) * time.Millisecond)
		n.kill9()
		wg.Wait()

		// The journal's last command is whole: a tail that stops inside a
		// multi-event command would be a partial write.
		var tail []struct{ Type, Op string }
		if err := json.Unmarshal([]byte(n.mustCtl("journal", "ls", "-o", "json")), &tail); err != nil {
			t.Fatal(err)
		}
		if len(tail) == 0 {
			t.Fatalf("round %d: journal ls lists no event", round)
		}
		if last := tail[len(tail)-1]; last.Op == "teardown_service_overlay" && last.Type != "service_torn_down" {
			t.Fatalf("round %d: the journal ends inside a command: %+v", round, last)
		}

		n.start()
		st := n.state()
		if err := st.CheckInvariants(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		l.mu.Lock()
		for name, ip := range l.dns {
			if rec := st.DNS[name]; rec == nil || rec.V4 != ip {
				t.Fatalf("round %d: acknowledged register_dns %s -> %v is lost", round, name, ip)
			}
		}
		for ip := range l.reserved {
			if o, ok := st.IPAM.Owners[ip]; !ok || o.Kind != projections.OwnerReservation {
				t.Fatalf("round %d: acknowledged allocate_ip %v is lost (%+v)", round, ip, o)
			}
		}
		for key, pfx := range l.peers {
			p := st.Peers["global"][key]
			if p == nil || len(p.AllowedIPs) != 1 || p.AllowedIPs[0] != pfx {
				t.Fatalf("round %d: acknowledged add_peer %s is lost", round, key)
			}
		}
		// A release that was in flight either happened or not; both are
		// fine, but the address must not be held by anything else.
		for ip := range l.unsure {
			if o, ok := st.IPAM.Owners[ip]; ok && o.Kind != projections.OwnerReservation {
				t.Fatalf("round %d: %v is held by %+v", round, ip, o)
			}
		}
		acked := l.acked
		l.mu.Unlock()
		if out, err := n.ctl("journal", "verify"); err != nil || !strings.Contains(out, "OK") {
			t.Fatalf("round %d: verify: %v\n%s", round, err, out)
		}
		t.Logf("round %d: %d commands acknowledged so far, journal at %d", round, acked, st.Seq)
	}
	n.stop()
	if out, err := n.ctl("journal", "verify"); err != nil || !strings.Contains(out, "OK") {
		t.Fatalf("final offline verify: %v\n%s", err, out)
	}
}
