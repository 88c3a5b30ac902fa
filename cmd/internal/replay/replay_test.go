package replay

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/zlayer/overlayd/journal"
	"github.com/zlayer/overlayd/projections"
)

func appendEvents(t *testing.T, st journal.Store, evs ...projections.Event) {
	t.Helper()
	var recs []journal.Record
	for _, ev := range evs {
		typ, ver, payload, err := projections.EncodeEvent(ev)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, journal.Record{Type: typ, Version: ver, Payload: payload, Cause: journal.Cause{Op: "test"}})
	}
	if _, err := st.Append(recs).Wait(); err != nil {
		t.Fatal(err)
	}
}

// An event type this build does not know stops the load with a clear
// error, unless its writer marked it ignorable.
func TestUnknownEvents(t *testing.T) {
	st := journal.NewMem()
	appendEvents(t, st, &projections.NodeIDSet{NodeID: 3})
	appendRecords(t, st, journal.Record{Type: "future_thing", Version: 1, Ignorable: true, Payload: []byte(`{}`)})
	s, stats, err := Load(st, Options{Verify: true})
	if err != nil || s.Node.ID != 3 || stats.Skipped != 1 || s.Seq != 2 {
		t.Fatalf("ignorable unknown event: %v %+v seq %d", err, stats, s.Seq)
	}
	appendRecords(t, st, journal.Record{Type: "future_thing", Version: 1, Payload: []byte(`{}`)})
	_, _, err = Load(st, Options{})
	if err == nil || !strings.Contains(err.Error(), "event 3 (future_thing") || !strings.Contains(err.Error(), "newer daemon") {
		t.Fatalf("unknown event: %v", err)
	}
}

// Snapshot + tail equals a full replay; a snapshot whose anchor event does
// not match the journal is ignored.
func TestSnapshotPlusTail(t *testing.T) {
	st := journal.NewMem()
	key := "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
	appendEvents(t, st, &projections.NodeIdentitySet{PublicKey: key}, &projections.NodeIDSet{NodeID: 1},
		&projections.DNSRegistered{Name: "a.example", IP: mustAddr("10.0.0.1")})
	s, _, err := Load(st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := st.HashAt(s.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SaveSnapshot(Snapshot(s, h)); err != nil {
		t.Fatal(err)
	}
	appendEvents(t, st, &projections.DNSRegistered{Name: "b.example", IP: mustAddr("10.0.0.2")}, &projections.DNSUnregistered{Name: "a.example"})
	withSnap, stats, err := Load(st, Options{Verify: true})
	if err != nil || stats.SnapshotSeq != 3 || stats.Replayed != 2 {
		t.Fatalf("%v %+v", err, stats)
	}
	full, _, err := Load(st, Options{NoSnapshot: true})
	if err != nil {
		t.Fatal(err)
	}
	a, err := withSnap.CanonicalJSON()
	if err != nil {
		t.Fatal(err)
	}
	b, err := full.CanonicalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) {
		t.Fatalf("snapshot+tail:\n%s\nfull replay:\n%s", a, b)
	}
	// A snapshot that claims another hash for its event is not used.
	bad := Snapshot(s, [32]byte{1})
	if err := st.SaveSnapshot(bad); err != nil {
		t.Fatal(err)
	}
	_, stats, err = Load(st, Options{})
	if err != nil || stats.SnapshotSeq != 0 || !strings.Contains(stats.SnapshotReason, "does not match") {
		t.Fatalf("mismatched snapshot used: %v %+v", err, stats)
	}
	rep, err := Verify(st, b, full.Seq)
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %v %+v", err, rep)
	}
	st.Tamper(2, 40)
	if rep, err := Verify(st, nil, 0); err != nil || rep.OK() || !strings.Contains(rep.Problems[0], "event 2 ") {
		t.Fatalf("tampered event not named: %v %+v", err, rep)
	}
}

func appendRecords(t *testing.T, st journal.Store, recs ...journal.Record) {
	t.Helper()
	if _, err := st.Append(recs).Wait(); err != nil {
		t.Fatal(err)
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// Verify compares the snapshot and the live state with a replay up to
// their own sequence, at the head (where the full replay is the answer)
// and before it, and names a difference either way.
func TestVerifyComparesAtTheirSequences(t *testing.T) {
	st := journal.NewMem()
	key := "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
	appendEvents(t, st, &projections.NodeIdentitySet{PublicKey: key}, &projections.NodeIDSet{NodeID: 1},
		&projections.DNSRegistered{Name: "a.example", IP: mustAddr("10.0.0.1")})
	at3, _, err := Load(st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	h3, err := st.HashAt(3)
	if err != nil {
		t.Fatal(err)
	}
	appendEvents(t, st, &projections.DNSRegistered{Name: "b.example", IP: mustAddr("10.0.0.2")}, &projections.DNSUnregistered{Name: "a.example"})
	at5, _, err := Load(st, Options{NoSnapshot: true})
	if err != nil || at5.Seq != 5 {
		t.Fatalf("replay: %v, seq %d", err, at5.Seq)
	}
	h5, err := st.HashAt(5)
	if err != nil {
		t.Fatal(err)
	}
	js := func(s *projections.State) []byte {
		b, err := s.CanonicalJSON()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	verify := func(live []byte, liveSeq uint64) *Report {
		t.Helper()
		rep, err := Verify(st, live, liveSeq)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}

	// A snapshot before the head.
	if err := st.SaveSnapshot(Snapshot(at3, h3)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		live    *projections.State
		liveSeq uint64
		ok      bool
	}{{at5, 5, true}, {at3, 3, true}, {at5, 3, false}, {at3, 5, false}} {
		rep := verify(js(c.live), c.liveSeq)
		if !strings.Contains(rep.Snapshot, "at 3 equals a replay up to 3") || rep.OK() != c.ok {
			t.Fatalf("live state at %d given as at %d: ok %v, want %v: %+v", c.live.Seq, c.liveSeq, rep.OK(), c.ok, rep)
		}
	}
	// A snapshot at the head: equal, then with the state of event 3 in
	// its body.
	if err := st.SaveSnapshot(Snapshot(at5, h5)); err != nil {
		t.Fatal(err)
	}
	if rep := verify(nil, 0); !rep.OK() || !strings.Contains(rep.Snapshot, "at 5 equals a replay up to 5") {
		t.Fatalf("snapshot at the head: %+v", rep)
	}
	wrong := Snapshot(at3, h5)
	wrong.Seq = 5
	if err := st.SaveSnapshot(wrong); err != nil {
		t.Fatal(err)
	}
	if rep := verify(nil, 0); rep.OK() || !strings.Contains(rep.Snapshot, "at 5 differs from a replay up to 5") {
		t.Fatalf("snapshot at the head holding another state: %+v", rep)
	}
}
