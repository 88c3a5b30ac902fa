package projections

import (
	"bytes"
	"errors"
	"math/rand"
	"net/netip"
	"testing"
)

// FuzzDecide: a command built from fuzz values (an op selector and its
// fields) is decided against a state built by a short seeded script (the
// property test's generator: seed and steps are fuzz values too). Decide
// never panics and never changes the state it is given; a refusal is a
// *Error naming a field; an acceptance's events all apply, keep the
// state's invariants, and survive the journal's encoding (the decoded
// events applied to a copy give the same state).
func FuzzDecide(f *testing.F) {
	// More seeds in testdata/fuzz/FuzzDecide (TestFuzzSeeds).
	f.Add(int64(1), uint8(20), uint8(11), "k", "192.0.2.7:51820", "10.100.0.0/24", "", uint64(25), false)
	f.Fuzz(func(t *testing.T, seed int64, steps, op uint8, a, b, c, d string, n uint64, flag bool) {
		cfg := DefaultConfig()
		cfg.SlicePrefix4 = 26
		s := scriptedState(t, cfg, seed, int(steps%64))
		cmd := fuzzCommand(op, a, b, c, d, n, flag)
		before := mustJSON(t, s)
		dec, err := Decide(s, cfg, cmd)
		if after := mustJSON(t, s); !bytes.Equal(before, after) {
			t.Fatalf("Decide(%T %+v) changed the state it was given (err %v)\nbefore: %s\nafter:  %s", cmd, cmd, err, before, after)
		}
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.Field == "" || pe.Msg == "" {
				t.Fatalf("%T %+v refused without naming a field: %#v", cmd, cmd, err)
			}
			return
		}
		if dec.Reply == nil {
			t.Fatalf("%T %+v accepted without a reply", cmd, cmd)
		}
		stored := s.Clone()
		for _, ev := range dec.Events {
			if err := s.Apply(ev); err != nil {
				t.Fatalf("%T %+v: its event %s does not apply: %v", cmd, cmd, ev.EventType(), err)
			}
			typ, ver, payload, err := EncodeEvent(ev)
			if err != nil {
				t.Fatalf("event %s does not encode: %v", ev.EventType(), err)
			}
			back, err := DecodeEvent(typ, ver, payload)
			if err != nil {
				t.Fatalf("event %s does not decode: %v\n%s", typ, err, payload)
			}
			if err := stored.Apply(back); err != nil {
				t.Fatalf("decoded event %s does not apply: %v\n%s", typ, err, payload)
			}
		}
		if err := s.CheckInvariants(); err != nil {
			t.Fatalf("after %T %+v: %v", cmd, cmd, err)
		}
		if got, want := mustJSON(t, stored), mustJSON(t, s); !bytes.Equal(got, want) {
			t.Fatalf("%T %+v: the journaled events give another state\nlive:   %s\nstored: %s", cmd, cmd, want, got)
		}
	})
}

// scriptedState is the state after the node identity and steps commands
// of the property generator seeded with seed (refusals skipped).
func scriptedState(t *testing.T, cfg Config, seed int64, steps int) *State {
	t.Helper()
	s := New()
	g := &gen{r: rand.New(rand.NewSource(seed))}
	apply := func(cmd Command) {
		d, err := Decide(s, cfg, cmd)
		if err != nil {
			return
		}
		for _, ev := range d.Events {
			if err := s.Apply(ev); err != nil {
				t.Fatalf("seed %d: script %T: %v", seed, cmd, err)
			}
		}
	}
	apply(SetNodeIdentity{PublicKey: genKey(999), Source: "generated"})
	for i := 0; i < steps; i++ {
		apply(g.command(s))
	}
	return s
}

// fuzzCommand builds the command op selects from the fuzz values.
func fuzzCommand(op uint8, a, b, c, d string, n uint64, flag bool) Command {
	addr := func(s string) netip.Addr { x, _ := netip.ParseAddr(s); return x }
	handle := func() Handle {
		switch n % 4 {
		case 0:
			return Handle{Platform: PlatformLinuxPID, PID: uint32(n >> 2)}
		case 1:
			return Handle{Platform: PlatformWindows, ContainerID: b}
		case 2:
			return GuestHandle(b)
		}
		return Handle{Platform: b, PID: uint32(n >> 2), ContainerID: c, ID: d}
	}
	scope := Scope{Service: d}
	switch op % 18 {
	case 0:
		return SetNodeID{NodeID: n}
	case 1:
		return AnnounceKey{PublicKey: a}
	case 2:
		return SetNodeIdentity{PublicKey: a, Source: b}
	case 3:
		return SetupGlobal{Deployment: a, InstanceID: b, ClusterCIDR: c, SliceCIDR: d, Port: uint16(n), NATEnabled: flag}
	case 4:
		return TeardownGlobal{}
	case 5:
		return SetupService{Service: a, Mode: b, NewPublicKey: c}
	case 6:
		return TeardownService{Service: a}
	case 7:
		return AllocateIP{Service: a, JoinGlobal: flag}
	case 8:
		return ReleaseIP{IP: addr(a)}
	case 9:
		// n: the handle (bits 0-1 and up), the process (bit 0 set: gone;
		// bits 1-39 the namespace inode; bit 40 the host's namespace),
		// bit 41 d is also the DNS server, bit 42 d is also the domain.
		cmd := Attach{Handle: handle(), Service: a, JoinGlobal: flag, NewGuestKey: c, NodeAddress: addr(d),
			Proc: ProcInfo{Exists: n&1 == 0, NetnsInode: n >> 1 & (1<<39 - 1), HostNetwork: n&(1<<40) != 0}}
		if n&(1<<41) != 0 {
			cmd.DNSServer = addr(d)
		}
		if n&(1<<42) != 0 {
			cmd.DNSDomain = d
		}
		return cmd
	case 10:
		return Detach{Handle: handle(), Reason: a, IfNetnsInode: n >> 33}
	case 11:
		return AddPeer{Scope: scope, PublicKey: a, Endpoint: b, AllowedIPs: c, Keepalive: n}
	case 12:
		return RemovePeer{Scope: scope, PublicKey: a}
	case 13:
		return AddAllowedIP{Scope: scope, PublicKey: a, CIDR: c}
	case 14:
		return RemoveAllowedIP{Scope: scope, PublicKey: a, CIDR: c}
	case 15:
		return RegisterDNS{Name: a, IP: addr(b)}
	case 16:
		return UnregisterDNS{Name: a}
	}
	return ObserveEndpoints{Observed: []Observation{{Scope: scope, PublicKey: a, Endpoint: b}}}
}

// FuzzDecodeSnapshot: the snapshot decoder never panics and refuses
// rather than half-loads; a state it accepts has a canonical JSON form,
// and re-encodes to a snapshot that decodes to the same state.
func FuzzDecodeSnapshot(f *testing.F) {
	// More seeds in testdata/fuzz/FuzzDecodeSnapshot (TestFuzzSeeds).
	f.Add(New().EncodeSnapshot())
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeSnapshot(b)
		if err != nil {
			if s != nil {
				t.Fatalf("refused (%v) with a state", err)
			}
			return
		}
		first, err := s.CanonicalJSON()
		if err != nil {
			t.Fatalf("accepted snapshot has no canonical JSON: %v", err)
		}
		s2, err := DecodeSnapshot(s.EncodeSnapshot())
		if err != nil {
			t.Fatalf("re-encoded snapshot does not decode: %v", err)
		}
		if second := mustJSON(t, s2); !bytes.Equal(first, second) {
			t.Fatalf("snapshot round trip differs:\nfirst:  %s\nsecond: %s", first, second)
		}
	})
}
