package journal

import (
	"errors"
	"github.com/zlayer/overlayd/tools/testtemp"
	"sync/atomic"
	"testing"
	"time"
)

// postingsOf collects Postings(term) over the whole journal.
func postingsOf(t *testing.T, s *BoltStore, term string) []uint64 {
	t.Helper()
	var got []uint64
	if err := s.Postings(term, 0, 0, false, func(seq uint64) error { got = append(got, seq); return nil }); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestIndexerBatchAcrossCompaction: an indexing batch whose events were
// read before a compaction, and whose keys are written after its swap,
// must not put index keys of archived events into the compacted file
// (Postings would answer sequences the journal no longer holds).
func TestIndexerBatchAcrossCompaction(t *testing.T) {
	dir := testtemp.Dir(t)
	s := openC(t, dir, Options{NoSync: true})
	fillN(t, s, 1, 4000)
	s.Close()
	stripIndex(t, dir) // the writable open below migrates, in batches of 100

	reached, release := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	Failpoint = func(name string) {
		// Only the indexer's first batch waits (Compact indexes up to
		// the head itself first, through the same path).
		if name == "journal/index-read" && first.CompareAndSwap(false, true) {
			close(reached)
			<-release
		}
	}
	defer func() { Failpoint = nil }()
	s = openC(t, dir, Options{NoSync: true, IndexBatch: 100})
	select {
	case <-reached: // the first batch (events 1..100) is read, not written
	case <-time.After(10 * time.Second):
		t.Fatal("the indexer did not read a batch")
	}
	if _, err := s.Compact(3000, fakeState(3000)); err != nil {
		t.Fatal(err)
	}
	close(release)
	waitIndexed(t, s)
	got := postingsOf(t, s, "type:test_event")
	if len(got) != 1000 || got[0] != 3001 || got[len(got)-1] != 4000 {
		first, last := uint64(0), uint64(0)
		if len(got) > 0 {
			first, last = got[0], got[len(got)-1]
		}
		t.Fatalf("postings after compaction at 3000: %d sequences, %d..%d; want 1000, 3001..4000", len(got), first, last)
	}
}

// TestPutStateDuringCompaction: a retained state put (and acknowledged)
// while the compaction's bulk copy is done but commits are not held yet,
// at an event the bulk copy already holds, is in the compacted journal.
func TestPutStateDuringCompaction(t *testing.T) {
	dir := testtemp.Dir(t)
	s := openC(t, dir, Options{NoSync: true})
	fillN(t, s, 1, 4000)
	waitIndexed(t, s) // the rewrite copies the commits since its bulk copy only
	h, _ := s.HashAt(3500)
	put := false
	Failpoint = func(name string) {
		if name == "journal/compact-copied" && !put {
			put = true
			if err := s.PutState(&Snapshot{Schema: 7, Seq: 3500, Hash: h, Body: []byte("kept")}); err != nil {
				t.Error(err)
			}
		}
	}
	defer func() { Failpoint = nil }()
	if _, err := s.Compact(3000, fakeState(3000)); err != nil {
		t.Fatal(err)
	}
	if !put {
		t.Fatal("failpoint journal/compact-copied not hit")
	}
	sn, err := s.StateAtOrBefore(4000)
	if err != nil {
		t.Fatal(err)
	}
	if sn == nil || sn.Seq != 3500 || string(sn.Body) != "kept" {
		t.Fatalf("retained state at 3500 after the compaction: %+v", sn)
	}
}

// TestCompactAfterRecoverReusesSequences: the bulk copy of a compaction
// sees a commit that reached the file but failed (its events were answered
// as failed); Recover cuts them and new commits take their sequence
// numbers before the compaction holds commits. The rewrite must hold the
// acknowledged events, not the failed ones: the chain verifies after it.
// (With the index on, the bulk copy's index is never complete here and the
// rewrite starts over anyway; with it off, only the events tell.)
func TestCompactAfterRecoverReusesSequences(t *testing.T) {
	dir := testtemp.Dir(t)
	s := openC(t, dir, Options{NoSync: true})
	s.stopIndexer()
	s.mu.Lock()
	s.idx.on = false // an index that could not be set up
	s.mu.Unlock()
	fillN(t, s, 1, 100)
	step := ""
	Failpoint = func(name string) {
		switch {
		case name == "journal/compact-archive" && step == "":
			step = "failed"
			s.faultHook = func(op string) error {
				if op == "synced" {
					return errors.New("injected: fsync failed")
				}
				return nil
			}
			if _, err := s.Append([]Record{rec(101), rec(102)}).Wait(); err == nil {
				t.Error("the injected commit failure did not fail")
			}
			s.faultHook = nil
		case name == "journal/compact-copied" && step == "failed":
			step = "recovered"
			if err := s.Recover(); err != nil {
				t.Error(err)
			}
			fillN(t, s, 201, 5) // events 101..105
		}
	}
	defer func() { Failpoint = nil }()
	if _, err := s.Compact(50, fakeState(50)); err != nil {
		t.Fatal(err)
	}
	Failpoint = nil
	if step != "recovered" {
		t.Fatalf("failpoints: reached %q", step)
	}
	if rep, err := s.Verify(); err != nil || !rep.OK() {
		t.Fatalf("verify after the compaction: %+v %v", rep, err)
	}
	e, err := s.Get(101)
	if err != nil {
		t.Fatal(err)
	}
	if want := rec(201).Payload; string(e.Payload) != string(want) {
		t.Fatalf("event 101 is %s, it was acknowledged as %s", e.Payload, want)
	}
}

// TestPostingsBehindAcrossCheckpoint: with the index stuck before a
// compaction's checkpoint, Postings scans the events past the index's
// through, which start after the checkpoint: it answers exactly the
// events the journal holds, ascending and descending.
func TestPostingsBehindAcrossCheckpoint(t *testing.T) {
	dir := testtemp.Dir(t)
	s := openC(t, dir, Options{NoSync: true})
	fillN(t, s, 1, 4000)
	s.Close()
	stripIndex(t, dir)
	reached, release := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	Failpoint = func(name string) {
		// Only the indexer's first batch waits (Compact indexes up to
		// the head itself first, through the same path).
		if name == "journal/index-read" && first.CompareAndSwap(false, true) {
			close(reached)
			<-release
		}
	}
	defer func() { Failpoint = nil }()
	s = openC(t, dir, Options{NoSync: true, IndexBatch: 100})
	defer close(release)
	<-reached
	if _, err := s.Compact(3000, fakeState(3000)); err != nil {
		t.Fatal(err)
	}
	// Compact indexes up to the head before its bulk copy (indexNow), so
	// the index may have caught up; either way the answers are exact.
	if st := s.IndexStatus(); !st.Ready {
		t.Fatalf("index status: %+v", st)
	}
	got := postingsOf(t, s, "type:test_event")
	if len(got) != 1000 || got[0] != 3001 || got[999] != 4000 {
		t.Fatalf("postings: %d sequences", len(got))
	}
	var rev []uint64
	if err := s.Postings("op:test", 2000, 3500, true, func(seq uint64) error { rev = append(rev, seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(rev) != 500 || rev[0] != 3500 || rev[499] != 3001 {
		t.Fatalf("reverse postings 2000..3500: %d sequences", len(rev))
	}
}
