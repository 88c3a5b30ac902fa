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
