package journal

import (
	"sync"
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
	dir := t.TempDir()
	s := openC(t, dir, Options{NoSync: true})
	fillN(t, s, 1, 4000)
	s.Close()
	stripIndex(t, dir) // the writable open below migrates, in batches of 100

	reached, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	Failpoint = func(name string) {
		if name == "journal/index-read" {
			once.Do(func() { close(reached); <-release })
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
	dir := t.TempDir()
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
