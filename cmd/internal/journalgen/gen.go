// Package journalgen writes journals the way a busy node makes them, for
// tests and benchmarks: services set up and torn down, addresses allocated
// and released, containers attached and detached, DNS names registered and
// removed, peers added, changed and removed; commits of random sizes;
// causes from clients (uid, pid, executable) and from the daemon's own
// checks. Everything is a function of the seed, so a failing test replays.
package journalgen

import (
	"encoding/base64"
	"fmt"
	"math/rand"
	"net/netip"

	"github.com/zlayer/overlayd/journal"
	"github.com/zlayer/overlayd/projections"
)

// Generator decides commands against its own state and appends the events
// to a store.
type Generator struct {
	Store journal.Store
	State *projections.State
	r     *rand.Rand
	cfg   projections.Config
	batch []journal.Record
	// MaxBatch bounds the events of one commit (a random size up to it).
	MaxBatch int

	addrs    []netip.Addr
	names    []string
	peers    []string
	handles  []projections.Handle
	services []string
	nextPID  uint32
	nextSvc  int
	i        int
	reqID    uint64
	appended uint64
}

// New prepares a generator over store (empty) and journals the node's
// identity, a global overlay and four services.
func New(store journal.Store, r *rand.Rand) *Generator {
	g := &Generator{Store: store, State: projections.New(), r: r, cfg: projections.DefaultConfig(), MaxBatch: 60, nextPID: 1000}
	g.Do(projections.SetNodeIdentity{PublicKey: Key(1 << 20), Source: "generated"}, false)
	g.Do(projections.SetupGlobal{Deployment: "gen", InstanceID: "1", ClusterCIDR: "10.0.0.0/8", SliceCIDR: "10.64.0.0/12", Port: 51820}, true)
	for i := 0; i < 4; i++ {
		g.newService()
	}
	return g
}

// Key is a deterministic WireGuard-shaped public key.
func Key(i int) string {
	var b [32]byte
	b[0], b[1], b[2], b[3] = byte(i), byte(i>>8), byte(i>>16), 0x55
	return base64.StdEncoding.EncodeToString(b[:])
}

// Do decides c and queues its events (committed by the batch logic or
// Flush). request marks a client's request (uid, pid, executable),
// otherwise the daemon's own ("reconcile").
func (g *Generator) Do(c projections.Command, request bool) projections.Reply {
	d, err := projections.Decide(g.State, g.cfg, c)
	if err != nil {
		return nil
	}
	cause := journal.Cause{Op: "reconcile"}
	if request {
		g.reqID++
		cause = journal.Cause{Op: c.Op(), RequestID: g.reqID, HasPeer: true, UID: 0, PID: uint32(4000 + g.r.Intn(3)), Exe: "/usr/bin/zlayer"}
	}
	for _, ev := range d.Events {
		if err := g.State.Apply(ev); err != nil {
			panic(fmt.Sprintf("journalgen: apply %s: %v", ev.EventType(), err))
		}
		g.State.Seq++
		typ, ver, payload, err := projections.EncodeEvent(ev)
		if err != nil {
			panic(err)
		}
		g.batch = append(g.batch, journal.Record{Type: typ, Version: ver, Cause: cause, Payload: payload})
	}
	if len(g.batch) >= 1+g.r.Intn(g.MaxBatch) {
		if err := g.Flush(); err != nil {
			panic(err)
		}
	}
	return d.Reply
}

// Flush commits the queued events.
func (g *Generator) Flush() error {
	if len(g.batch) == 0 {
		return nil
	}
	_, err := g.Store.Append(g.batch).Wait()
	g.appended += uint64(len(g.batch))
	g.batch = nil
	return err
}

func (g *Generator) newService() {
	name := fmt.Sprintf("svc%d", g.nextSvc)
	g.nextSvc++
	if _, ok := g.Do(projections.SetupService{Service: name, Mode: "shared"}, true).(projections.ReplyServiceOverlay); ok {
		g.services = append(g.services, name)
	}
}

// Until runs random operations until the state has journaled n events,
// then flushes.
func (g *Generator) Until(n uint64) error {
	for g.State.Seq < n {
		g.Step()
	}
	return g.Flush()
}

// Step runs one random operation.
func (g *Generator) Step() {
	g.i++
	i := g.i
	r := g.r
	switch k := r.Intn(20); {
	case k < 4:
		if len(g.addrs) > 50 {
			g.Do(projections.ReleaseIP{IP: g.addrs[0]}, true)
			g.addrs = g.addrs[1:]
		}
		if rep, ok := g.Do(projections.AllocateIP{Service: g.service()}, true).(projections.ReplyIP); ok {
			g.addrs = append(g.addrs, rep.IP)
		}
	case k < 10:
		if len(g.names) > 50 {
			g.Do(projections.UnregisterDNS{Name: g.names[0]}, true)
			g.names = g.names[1:]
		}
		name := fmt.Sprintf("task-%d.svc%d.test.local", i, i%4)
		g.Do(projections.RegisterDNS{Name: name, IP: netip.AddrFrom4([4]byte{10, 64, byte(i >> 8), byte(i)})}, true)
		g.names = append(g.names, name)
	case k < 13:
		if len(g.peers) > 10 {
			g.Do(projections.RemovePeer{PublicKey: g.peers[0]}, true)
			g.peers = g.peers[1:]
		}
		key := Key(i)
		g.Do(projections.AddPeer{PublicKey: key, Endpoint: "192.0.2.10:51820", AllowedIPs: fmt.Sprintf("10.%d.%d.0/24", 128+i%64, (i>>6)&255), Keepalive: 25}, true)
		g.peers = append(g.peers, key)
	case k < 14 && len(g.peers) > 0:
		key := g.peers[r.Intn(len(g.peers))]
		g.Do(projections.AddAllowedIP{PublicKey: key, CIDR: fmt.Sprintf("172.%d.%d.0/24", 16+i%16, i&255)}, true)
	case k < 16:
		if len(g.handles) > 20 {
			h := g.handles[0]
			g.handles = g.handles[1:]
			g.Do(projections.Detach{Handle: h}, r.Intn(4) != 0)
		}
		g.nextPID++
		h := projections.Handle{Platform: projections.PlatformLinuxPID, PID: g.nextPID}
		rep := g.Do(projections.Attach{Handle: h, Service: g.service(), JoinGlobal: r.Intn(3) == 0,
			Proc: projections.ProcInfo{Exists: true, NetnsInode: uint64(4026530000 + g.nextPID)}}, true)
		if _, ok := rep.(projections.ReplyAttached); ok {
			g.handles = append(g.handles, h)
		}
	case k < 17 && len(g.peers) > 0:
		key := g.peers[r.Intn(len(g.peers))]
		g.Do(projections.ObserveEndpoints{Observed: []projections.Observation{{PublicKey: key, Endpoint: fmt.Sprintf("198.51.100.%d:%d", i&255, 40000+i%1000)}}}, false)
	case k < 18 && len(g.services) > 6:
		// Tear down a service with nothing attached to it.
		for j, s := range g.services {
			if !g.inUse(s) {
				g.Do(projections.TeardownService{Service: s}, true)
				g.services = append(g.services[:j], g.services[j+1:]...)
				break
			}
		}
	case k < 19:
		g.newService()
	default:
		g.Do(projections.SetNodeID{NodeID: uint64(1 + r.Intn(3))}, true)
	}
}

func (g *Generator) service() string {
	if len(g.services) == 0 {
		g.newService()
	}
	return g.services[g.r.Intn(len(g.services))]
}

func (g *Generator) inUse(s string) bool {
	for _, a := range g.State.Attachments {
		if a.Service == s {
			return true
		}
	}
	for _, o := range g.State.IPAM.Owners {
		if o.Pool == "service:"+s && o.Kind != projections.OwnerGateway {
			return true
		}
	}
	return false
}
