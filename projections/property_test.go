package projections

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"maps"
	"math/rand"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zlayer/overlayd/tools/testseed"
)

// genKey returns a deterministic valid WireGuard key for n.
func genKey(n int) string {
	var b [32]byte
	b[0], b[1] = byte(n), byte(n>>8)
	b[31] = 0x42
	return base64.StdEncoding.EncodeToString(b[:])
}

type gen struct {
	r    *rand.Rand
	next int
	// windows: a Windows node (windows_container handles, with and
	// without an ip; detaches by container id or namespace GUID).
	windows bool
}

func (g *gen) pick(xs ...string) string { return xs[g.r.Intn(len(xs))] }

func (g *gen) scope() Scope {
	if g.r.Intn(3) == 0 {
		return Scope{Service: g.pick("web", "db", "cache", "api")}
	}
	return Scope{}
}

// prefix returns a random prefix: sometimes inside the small cluster used by
// the generator (to hit overlap refusals), mostly elsewhere.
func (g *gen) prefix() string {
	if g.r.Intn(4) == 0 {
		return fmt.Sprintf("10.9.%d.%d/%d", g.r.Intn(4), g.r.Intn(16)*16, 28+g.r.Intn(5))
	}
	return fmt.Sprintf("10.%d.%d.0/24", 100+g.r.Intn(5), g.r.Intn(8))
}

func (g *gen) addr(s *State) netip.Addr {
	if len(s.IPAM.Owners) > 0 && g.r.Intn(3) > 0 {
		// Sorted, not map order: a seed must replay the same sequence.
		held := slices.SortedFunc(maps.Keys(s.IPAM.Owners), netip.Addr.Compare)
		return held[g.r.Intn(len(held))]
	}
	return netip.AddrFrom4([4]byte{10, 9, byte(g.r.Intn(4)), byte(g.r.Intn(256))})
}

func (g *gen) command(s *State) Command {
	g.next++
	switch g.r.Intn(17) {
	case 0:
		return SetupGlobal{Deployment: "prod", InstanceID: g.pick("1", "2"), ClusterCIDR: "10.9.0.0/22",
			SliceCIDR: g.pick("", "", "10.9.0.0/26"), Port: 51820, NATEnabled: g.r.Intn(2) == 0}
	case 1:
		if g.r.Intn(4) == 0 {
			return TeardownGlobal{}
		}
		return SetNodeID{NodeID: uint64(g.r.Intn(3))}
	case 2:
		return SetupService{Service: g.pick("web", "db", "cache", "api"), Mode: g.pick("auto", "shared", "dedicated"), NewPublicKey: genKey(1000 + g.next)}
	case 3:
		return TeardownService{Service: g.pick("web", "db", "cache", "api")}
	case 4, 5:
		return AllocateIP{Service: g.pick("", "web", "db", "nope"), JoinGlobal: g.r.Intn(2) == 0}
	case 6:
		return ReleaseIP{IP: g.addr(s)}
	case 7, 8:
		if g.windows {
			return g.windowsAttach(s)
		}
		pid := uint32(1 + g.r.Intn(12))
		return Attach{Handle: Handle{Platform: PlatformLinuxPID, PID: pid}, Service: g.pick("web", "db", "cache"),
			JoinGlobal: g.r.Intn(2) == 0, Proc: ProcInfo{Exists: g.r.Intn(10) > 0, NetnsInode: uint64(pid)*10 + uint64(g.r.Intn(2))}}
	case 9:
		return Attach{Handle: GuestHandle(g.pick("vm-1", "vm-2", "vm-3")), Service: "web", NewGuestKey: genKey(2000 + g.next), NodeAddress: netip.MustParseAddr("192.0.2.1")}
	case 10:
		if g.r.Intn(2) == 0 {
			return Detach{Handle: GuestHandle(g.pick("vm-1", "vm-2", "vm-3"))}
		}
		if g.windows {
			return Detach{Handle: g.windowsHandle(s)}
		}
		return Detach{Handle: Handle{Platform: PlatformLinuxPID, PID: uint32(1 + g.r.Intn(12))}}
	case 11, 12:
		aips := g.prefix()
		if g.r.Intn(2) == 0 {
			aips += "," + g.prefix()
		}
		return AddPeer{Scope: g.scope(), PublicKey: genKey(g.r.Intn(6)), Endpoint: g.pick("", "192.0.2.7:51820", "[2001:db8::1]:51820"), AllowedIPs: aips, Keepalive: uint64(g.r.Intn(2) * 25)}
	case 13:
		return RemovePeer{Scope: g.scope(), PublicKey: genKey(g.r.Intn(6))}
	case 14:
		if g.r.Intn(2) == 0 {
			return RemoveAllowedIP{Scope: g.scope(), PublicKey: genKey(g.r.Intn(6)), CIDR: g.prefix()}
		}
		return AddAllowedIP{Scope: g.scope(), PublicKey: genKey(g.r.Intn(6)), CIDR: g.prefix()}
	case 15:
		return RegisterDNS{Name: g.pick("a.example", "B.example.", "c.example"), IP: netip.AddrFrom4([4]byte{10, 9, 0, byte(g.r.Intn(4))})}
	default:
		return UnregisterDNS{Name: g.pick("a.example", "b.example", "c.example")}
	}
}

// windowsHandle is a windows_container handle: a container id, or
// sometimes an attachment's namespace GUID (as the reference client
// detaches), in any case.
func (g *gen) windowsHandle(s *State) Handle {
	if g.r.Intn(3) == 0 {
		for _, k := range sortedKeys(s.Attachments) {
			if a := s.Attachments[k]; a.NamespaceGUID != "" && g.r.Intn(2) == 0 {
				id := a.NamespaceGUID
				if g.r.Intn(2) == 0 {
					id = "{" + strings.ToUpper(id) + "}"
				}
				return Handle{Platform: PlatformWindows, ContainerID: id}
			}
		}
	}
	return Handle{Platform: PlatformWindows, ContainerID: g.pick("ctr-1", "ctr-2", "ctr-3", "ctr-4", "ctr-5")}
}

// windowsAttach is a windows_container attach, sometimes with an ip in
// the handle: a free or taken address of the service, or one elsewhere.
func (g *gen) windowsAttach(s *State) Command {
	c := Attach{Handle: g.windowsHandle(s), Service: g.pick("web", "db", "cache"), JoinGlobal: g.r.Intn(2) == 0}
	if g.r.Intn(3) == 0 {
		c.DNSServer, c.DNSDomain = netip.MustParseAddr("10.9.0.1"), g.pick("overlay", "cluster.local")
	}
	if g.r.Intn(2) == 0 {
		if sv := s.Services[c.Service]; sv != nil && g.r.Intn(4) > 0 {
			a := sv.Subnet.Addr()
			for n := g.r.Intn(16); n > 0; n-- {
				a = a.Next()
			}
			c.HandleIP = a
		} else {
			c.HandleIP = g.addr(s)
		}
	}
	return c
}

// repeatable says whether repeating c right after it succeeded must be a
// no-op with the same reply.
func repeatable(c Command) bool {
	switch c := c.(type) {
	case AllocateIP, ObserveEndpoints:
		return false
	case Attach:
		return c.Handle.Platform != PlatformGuest
	}
	return true
}

func mustJSON(t *testing.T, s *State) []byte {
	t.Helper()
	b, err := s.CanonicalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func replay(t *testing.T, evs []Event) *State {
	t.Helper()
	s := New()
	for i, ev := range evs {
		// Round-trip through the persisted form, as the journal does.
		typ, ver, payload, err := EncodeEvent(ev)
		if err != nil {
			t.Fatal(err)
		}
		dec, err := DecodeEvent(typ, ver, payload)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Apply(dec); err != nil {
			t.Fatalf("replay event %d (%s): %v", i, typ, err)
		}
		s.Seq = uint64(i + 1)
	}
	return s
}

// Random command sequences: every Decide, accepted or refused, leaves the
// state it was given unchanged (its canonical JSON is compared before and
// after); a refusal names a field; applied events keep the invariants; a
// repeatable command repeated is a no-op with the same reply; a replay, a
// snapshot plus the tail, a Clone and a canonical JSON round trip all give
// the live state. Sequence k runs on seed base+k, base fresh unless
// OVERLAYD_TEST_SEED gives one, and then only that sequence runs.
func TestPropertyRandomSequences(t *testing.T) {
	seqs := 3000
	if testing.Short() {
		seqs = 300
	}
	runProperty(t, "linux", seqs)
}

// TestPropertyWindows is TestPropertyRandomSequences on a Windows node:
// windows_container attaches (with and without handle.ip, join_global and
// DNS settings) and detaches by container id or by namespace GUID; the
// invariants include a namespace GUID of its own for every Windows
// attachment.
func TestPropertyWindows(t *testing.T) {
	seqs := 800
	if testing.Short() {
		seqs = 100
	}
	runProperty(t, "windows", seqs)
}

func runProperty(t *testing.T, platform string, seqs int) {
	steps := 120
	base, replaying := testseed.FromEnv(t)
	if replaying {
		seqs = 1
	} else {
		base = time.Now().UnixNano()
	}
	t.Logf("seeds %d to %d (a failure names its seed; replay one with %s=<seed>)", base, base+int64(seqs)-1, testseed.Env)
	cfg := DefaultConfig()
	cfg.SlicePrefix4 = 26
	cfg.Platform = platform
	var applied, refused, winAttached, byGUID int
	for k := 0; k < seqs; k++ {
		seed := base + int64(k)
		fatalf := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("seed %d: "+format+"\n%s", append(append([]any{seed}, args...), testseed.ReplayHint(t, seed))...)
		}
		g := &gen{r: rand.New(rand.NewSource(seed)), windows: platform == "windows"}
		s := New()
		cur := mustJSON(t, s) // s's canonical JSON, kept up to date
		var evs []Event
		// decide runs Decide and checks that it left s as it was, whether
		// it accepted the command or refused it.
		decide := func(step int, cmd Command) (Decision, error) {
			t.Helper()
			d, err := Decide(s, cfg, cmd)
			if after := mustJSON(t, s); !bytes.Equal(after, cur) {
				fatalf("step %d: Decide(%T %+v) changed the state it was given (refused: %v)\nbefore: %s\nafter:  %s", step, cmd, cmd, err, cur, after)
			}
			return d, err
		}
		apply := func(d Decision) {
			for _, ev := range d.Events {
				if err := s.Apply(ev); err != nil {
					fatalf("apply %s: %v", ev.EventType(), err)
				}
				evs = append(evs, ev)
				s.Seq = uint64(len(evs))
			}
			cur = mustJSON(t, s)
		}
		d, err := decide(-1, SetNodeIdentity{PublicKey: genKey(999), Source: "generated"})
		if err != nil {
			fatalf("set_node_identity: %v", err)
		}
		apply(d)
		for i := 0; i < steps; i++ {
			cmd := g.command(s)
			d, err := decide(i, cmd)
			if err != nil {
				var pe *Error
				if !asError(err, &pe) || pe.Msg == "" {
					fatalf("step %d: %T refused without a field error: %v", i, cmd, err)
				}
				refused++
				continue
			}
			apply(d)
			applied++
			for _, ev := range d.Events {
				if e, ok := ev.(*ContainerAttached); ok && e.NamespaceGUID != "" {
					winAttached++
				}
			}
			if c, ok := cmd.(Detach); ok && len(d.Events) > 0 {
				if _, isGUID := CanonicalGUID(c.Handle.ContainerID); isGUID {
					byGUID++
				}
			}
			if err := s.CheckInvariants(); err != nil {
				fatalf("step %d after %T %+v: %v", i, cmd, cmd, err)
			}
			if repeatable(cmd) {
				d2, err := decide(i, cmd)
				if err != nil {
					fatalf("step %d: repeating %T failed: %v", i, cmd, err)
				}
				if len(d2.Events) != 0 {
					fatalf("step %d: repeating %T %+v decided %d more events (first %s)", i, cmd, cmd, len(d2.Events), d2.Events[0].EventType())
				}
				if !reflect.DeepEqual(d.Reply, d2.Reply) {
					fatalf("step %d: repeating %T answered %+v, first %+v", i, cmd, d2.Reply, d.Reply)
				}
			}
		}
		live := cur
		if full := mustJSON(t, replay(t, evs)); !bytes.Equal(full, live) {
			fatalf("replay differs from live state\nlive:   %s\nreplay: %s", live, full)
		}
		// Snapshot at a random point, then the tail.
		cut := g.r.Intn(len(evs) + 1)
		snap, err := DecodeSnapshot(replay(t, evs[:cut]).EncodeSnapshot())
		if err != nil {
			fatalf("snapshot at %d: %v", cut, err)
		}
		for i, ev := range evs[cut:] {
			if err := snap.Apply(ev); err != nil {
				fatalf("tail event %d: %v", cut+i, err)
			}
			snap.Seq = uint64(cut + i + 1)
		}
		if got := mustJSON(t, snap); !bytes.Equal(got, live) {
			fatalf("snapshot at %d + tail differs from live state", cut)
		}
		if got := mustJSON(t, s.Clone()); !bytes.Equal(got, live) {
			fatalf("Clone differs")
		}
		if back, err := ParseCanonicalJSON(live); err != nil || !bytes.Equal(mustJSON(t, back), live) {
			fatalf("canonical JSON does not round-trip: %v", err)
		}
	}
	t.Logf("%d sequences: %d commands applied, %d refused", seqs, applied, refused)
	if platform == "windows" {
		t.Logf("%d windows_container attaches, %d detaches by namespace GUID", winAttached, byGUID)
		if winAttached < seqs || byGUID < seqs/10 {
			t.Fatalf("generator too weak: %d windows attaches, %d detaches by GUID", winAttached, byGUID)
		}
	}
	if applied < seqs*steps/4 {
		t.Fatalf("generator too weak: only %d of %d commands applied", applied, seqs*steps)
	}
}
