package projections

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math/rand"
	"net/netip"
	"reflect"
	"testing"
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
		i := g.r.Intn(len(s.IPAM.Owners))
		for a := range s.IPAM.Owners {
			if i == 0 {
				return a
			}
			i--
		}
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
		pid := uint32(1 + g.r.Intn(12))
		return Attach{Handle: Handle{Platform: PlatformLinuxPID, PID: pid}, Service: g.pick("web", "db", "cache"),
			JoinGlobal: g.r.Intn(2) == 0, Proc: ProcInfo{Exists: g.r.Intn(10) > 0, NetnsInode: uint64(pid)*10 + uint64(g.r.Intn(2))}}
	case 9:
		return Attach{Handle: GuestHandle(g.pick("vm-1", "vm-2", "vm-3")), Service: "web", NewGuestKey: genKey(2000 + g.next), NodeAddress: netip.MustParseAddr("192.0.2.1")}
	case 10:
		if g.r.Intn(2) == 0 {
			return Detach{Handle: GuestHandle(g.pick("vm-1", "vm-2", "vm-3"))}
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

func TestPropertyRandomSequences(t *testing.T) {
	seqs, steps := 3000, 120
	if testing.Short() {
		seqs = 300
	}
	cfg := DefaultConfig()
	cfg.SlicePrefix4 = 26
	var applied, refused int
	for seed := 0; seed < seqs; seed++ {
		g := &gen{r: rand.New(rand.NewSource(int64(seed)))}
		s := New()
		var evs []Event
		apply := func(d Decision) {
			for _, ev := range d.Events {
				if err := s.Apply(ev); err != nil {
					t.Fatalf("seed %d: apply %s: %v", seed, ev.EventType(), err)
				}
				evs = append(evs, ev)
				s.Seq = uint64(len(evs))
			}
		}
		d, err := Decide(s, cfg, SetNodeIdentity{PublicKey: genKey(999), Source: "generated"})
		if err != nil {
			t.Fatal(err)
		}
		apply(d)
		for i := 0; i < steps; i++ {
			cmd := g.command(s)
			d, err := Decide(s, cfg, cmd)
			if err != nil {
				var pe *Error
				if !asError(err, &pe) || pe.Msg == "" {
					t.Fatalf("seed %d step %d: %T refused without a field error: %v", seed, i, cmd, err)
				}
				refused++
				continue
			}
			before := mustJSON(t, s)
			apply(d)
			applied++
			if err := s.CheckInvariants(); err != nil {
				t.Fatalf("seed %d step %d after %T %+v: %v", seed, i, cmd, cmd, err)
			}
			if repeatable(cmd) {
				d2, err := Decide(s, cfg, cmd)
				if err != nil {
					t.Fatalf("seed %d step %d: repeating %T failed: %v", seed, i, cmd, err)
				}
				if len(d2.Events) != 0 {
					t.Fatalf("seed %d step %d: repeating %T %+v decided %d more events (first %s)", seed, i, cmd, cmd, len(d2.Events), d2.Events[0].EventType())
				}
				if !reflect.DeepEqual(d.Reply, d2.Reply) {
					t.Fatalf("seed %d step %d: repeating %T answered %+v, first %+v", seed, i, cmd, d2.Reply, d.Reply)
				}
			}
			_ = before
		}
		live := mustJSON(t, s)
		if full := mustJSON(t, replay(t, evs)); !bytes.Equal(full, live) {
			t.Fatalf("seed %d: replay differs from live state\nlive:   %s\nreplay: %s", seed, live, full)
		}
		// Snapshot at a random point, then the tail.
		cut := g.r.Intn(len(evs) + 1)
		snap, err := DecodeSnapshot(replay(t, evs[:cut]).EncodeSnapshot())
		if err != nil {
			t.Fatal(err)
		}
		for i, ev := range evs[cut:] {
			if err := snap.Apply(ev); err != nil {
				t.Fatalf("seed %d: tail event %d: %v", seed, cut+i, err)
			}
			snap.Seq = uint64(cut + i + 1)
		}
		if got := mustJSON(t, snap); !bytes.Equal(got, live) {
			t.Fatalf("seed %d: snapshot at %d + tail differs from live state", seed, cut)
		}
		if got := mustJSON(t, s.Clone()); !bytes.Equal(got, live) {
			t.Fatalf("seed %d: Clone differs", seed)
		}
		if back, err := ParseCanonicalJSON(live); err != nil || !bytes.Equal(mustJSON(t, back), live) {
			t.Fatalf("seed %d: canonical JSON does not round-trip: %v", seed, err)
		}
	}
	t.Logf("%d sequences: %d commands applied, %d refused", seqs, applied, refused)
	if applied < seqs*steps/4 {
		t.Fatalf("generator too weak: only %d of %d commands applied", applied, seqs*steps)
	}
}
