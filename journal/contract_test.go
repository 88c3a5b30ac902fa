package journal

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/zlayer/overlayd/tools/testtemp"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A store under test, and (for the failure contract) a way to make its
// medium fail and heal.
type contractStore struct {
	s     Store
	brk   func(err error) // nil: the store cannot be made to fail
	heal  func()
	close func()
}

func contractStores(t *testing.T) map[string]func(t *testing.T) contractStore {
	boltStore := func(t *testing.T) *BoltStore {
		s, err := Open(testtemp.Dir(t), Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	return map[string]func(t *testing.T) contractStore{
		"mem": func(t *testing.T) contractStore { return contractStore{s: NewMem()} },
		"bolt": func(t *testing.T) contractStore {
			s := boltStore(t)
			var mu sync.Mutex
			var broken error
			s.faultHook = func(string) error {
				mu.Lock()
				defer mu.Unlock()
				return broken
			}
			return contractStore{s: s,
				brk:  func(err error) { mu.Lock(); broken = err; mu.Unlock() },
				heal: func() { mu.Lock(); broken = nil; mu.Unlock() }}
		},
		"faulty(mem)": func(t *testing.T) contractStore {
			f := NewFaulty(NewMem())
			t.Cleanup(func() { f.Close() })
			return contractStore{s: f, brk: f.Break, heal: f.Heal}
		},
		"faulty(bolt)": func(t *testing.T) contractStore {
			f := NewFaulty(boltStore(t))
			t.Cleanup(func() { f.Close() })
			return contractStore{s: f, brk: f.Break, heal: f.Heal}
		},
	}
}

func appendWait(t *testing.T, s Store, recs ...Record) []Envelope {
	t.Helper()
	envs, err := s.Append(recs).Wait()
	if err != nil {
		t.Fatal(err)
	}
	return envs
}

func allEvents(t *testing.T, s Store) [][]byte {
	t.Helper()
	var out [][]byte
	if err := s.Iterate(0, true, func(e *Envelope) error {
		out = append(out, e.encode(nil))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// The Store contract on a healthy store, for every implementation.
func TestStoreContract(t *testing.T) {
	for name, mk := range contractStores(t) {
		t.Run(name, func(t *testing.T) {
			cs := mk(t)
			s := cs.s
			if id := s.Identity(); id.ID.IsZero() || !id.Fresh {
				t.Fatalf("a new store's identity: %+v", id)
			}
			if h := s.Health(); !h.OK() {
				t.Fatalf("a new store is not healthy: %v", h.Err)
			}
			if err := s.Recover(); err != nil {
				t.Fatalf("Recover on a healthy store: %v", err)
			}
			if seq, _ := s.Head(); seq != 0 {
				t.Fatalf("empty head %d", seq)
			}
			a := appendWait(t, s, rec(1), rec(2))
			b := appendWait(t, s, rec(3))
			if a[0].Seq != 1 || a[1].Seq != 2 || b[0].Seq != 3 || b[0].PrevHash != a[1].Hash {
				t.Fatalf("sequence or link: %+v %+v", a, b)
			}
			if seq, h := s.Head(); seq != 3 || h != b[0].Hash {
				t.Fatalf("head %d", seq)
			}
			if h, err := s.HashAt(2); err != nil || h != a[1].Hash {
				t.Fatalf("HashAt(2): %v", err)
			}
			if _, err := s.HashAt(4); !errors.Is(err, ErrNotFound) {
				t.Fatalf("HashAt past the head: %v", err)
			}
			n := 0
			if err := s.Iterate(1, true, func(e *Envelope) error { n++; return nil }); err != nil || n != 2 {
				t.Fatalf("Iterate(1): %d, %v", n, err)
			}
			rep, err := s.Verify()
			if err != nil || !rep.OK() || rep.Events != 3 {
				t.Fatalf("verify: %v %+v", err, rep)
			}
			// Snapshots carry the journal's id; one past the head is refused.
			if err := s.SaveSnapshot(&Snapshot{Journal: ID{9}, Schema: 1, Seq: 3, Hash: b[0].Hash, Body: []byte("x")}); err != nil {
				t.Fatal(err)
			}
			sn, err := s.LoadSnapshot()
			if err != nil || sn.Journal != s.Identity().ID || sn.Seq != 3 || !bytes.Equal(sn.Body, []byte("x")) {
				t.Fatalf("snapshot: %+v %v", sn, err)
			}
			if err := s.SaveSnapshot(&Snapshot{Seq: 4}); !errors.Is(err, ErrSnapshotAhead) {
				t.Fatalf("snapshot past the head: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Append([]Record{rec(4)}).Wait(); !errors.Is(err, ErrClosed) {
				t.Fatalf("append after close: %v", err)
			}
		})
	}
}

// The failure contract, for every store that can be made to fail: a
// failed commit fails its batch and everything queued behind it, wrapping
// ErrReadOnly and the cause; the store is read-only with Head unchanged
// and nothing of the failed batches readable; Recover fails while the
// cause persists and succeeds once it is gone; writes then continue from
// the acknowledged head.
func TestStoreFailureContract(t *testing.T) {
	for name, mk := range contractStores(t) {
		t.Run(name, func(t *testing.T) {
			cs := mk(t)
			if cs.brk == nil {
				t.Skip("this store never fails a write")
			}
			s := cs.s
			if f, ok := s.(*Faulty); ok {
				// Keep the failing commit pending while later appends queue.
				f.SetDelay(20 * time.Millisecond)
			}
			for i := 0; i < 3; i++ {
				appendWait(t, s, rec(i))
			}
			before := allEvents(t, s)
			head, hash := s.Head()
			cause := fmt.Errorf("write %s: %w", "journal.db", syscall.EIO)
			cs.brk(cause)
			start := time.Now()
			c1 := s.Append([]Record{rec(10), rec(11)})
			c2 := s.Append([]Record{rec(12)})
			for i, c := range []*Commit{c1, c2} {
				if _, err := c.Wait(); !errors.Is(err, ErrReadOnly) || !errors.Is(err, syscall.EIO) {
					t.Fatalf("append %d after the fault: %v (want ErrReadOnly wrapping EIO)", i+1, err)
				}
			}
			if seq, h := s.Head(); seq != head || h != hash {
				t.Fatalf("head moved to %d after failed commits", seq)
			}
			hl := s.Health()
			if hl.OK() || !errors.Is(hl.Err, ErrReadOnly) || !errors.Is(hl.Err, syscall.EIO) || hl.Since.Before(start.Add(-time.Second)) {
				t.Fatalf("health after the fault: %+v", hl)
			}
			// Later appends fail at once: resolved when Append returns,
			// never queued.
			c3 := s.Append([]Record{rec(13)})
			select {
			case <-c3.Done():
			default:
				t.Fatal("an append while read-only was queued: it should fail at once")
			}
			if _, err := c3.Wait(); !errors.Is(err, ErrReadOnly) {
				t.Fatalf("append while read-only: %v", err)
			}
			// Reads work and show nothing of the failed batches.
			if got := allEvents(t, s); len(got) != len(before) {
				t.Fatalf("%d events readable, %d acknowledged", len(got), len(before))
			}
			if _, err := s.HashAt(head + 1); !errors.Is(err, ErrNotFound) {
				t.Fatalf("HashAt past the head: %v", err)
			}
			if rep, err := s.Verify(); err != nil || !rep.OK() || rep.LastSeq != head {
				t.Fatalf("verify while read-only: %v %+v", err, rep)
			}
			if err := s.SaveSnapshot(&Snapshot{Seq: head + 1}); !errors.Is(err, ErrSnapshotAhead) {
				t.Fatalf("snapshot past the head: %v", err)
			}
			// Recover fails while the cause persists.
			if err := s.Recover(); err == nil || !errors.Is(err, syscall.EIO) {
				t.Fatalf("recover while broken: %v", err)
			}
			if s.Health().OK() {
				t.Fatal("healthy after a failed recover")
			}
			cs.heal()
			if err := s.Recover(); err != nil {
				t.Fatalf("recover after heal: %v", err)
			}
			if h := s.Health(); !h.OK() {
				t.Fatalf("health after recover: %v", h.Err)
			}
			after := appendWait(t, s, rec(20))
			if after[0].Seq != head+1 || after[0].PrevHash != hash {
				t.Fatalf("first event after recover: seq %d", after[0].Seq)
			}
			got := allEvents(t, s)
			if len(got) != len(before)+1 {
				t.Fatalf("%d events after recover, want %d", len(got), len(before)+1)
			}
			for i := range before {
				if !bytes.Equal(got[i], before[i]) {
					t.Fatalf("event %d changed", i+1)
				}
			}
			if rep, err := s.Verify(); err != nil || !rep.OK() {
				t.Fatalf("verify after recover: %v %+v", err, rep)
			}
			if f, ok := s.(*Faulty); ok {
				if n := len(allEvents(t, f.Inner())); n != len(before)+1 {
					t.Fatalf("the inner store holds %d events", n)
				}
			}
		})
	}
}

// An append queued before a failure fails, even when Recover succeeds
// before its turn comes: it was decided against a state that held the
// failed batch.
func TestQueuedBehindFailureFailsAfterRecover(t *testing.T) {
	f := NewFaulty(NewMem())
	defer f.Close()
	f.SetDelay(30 * time.Millisecond)
	f.FailNext(1, syscall.ENOSPC)
	c1 := f.Append([]Record{rec(1)})
	c2 := f.Append([]Record{rec(2)}) // queued behind c1
	if _, err := c1.Wait(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("first: %v", err)
	}
	if err := f.Recover(); err != nil { // FailNext(1) is used up: transient
		t.Fatal(err)
	}
	if _, err := c2.Wait(); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("queued behind the failure: %v", err)
	}
	if envs, err := f.Append([]Record{rec(3)}).Wait(); err != nil || envs[0].Seq != 1 {
		t.Fatalf("after recover: %v", err)
	}
	if f.Commits() != 2 {
		t.Fatalf("%d commits attempted, want 2 (the failed one and rec 3)", f.Commits())
	}
}

// A commit that reached the file but was answered as failed (its sync
// failed) is never read back: Head, Iterate, HashAt and Verify stop at the
// acknowledged head; Recover removes it from the file and records it as
// discarded, so that a salvage of the raw pages leaves it out too.
func TestFailedCommitThatReachedTheFileIsCutBack(t *testing.T) {
	dir := testtemp.Dir(t)
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	big := func(i int) Record {
		r := rec(i)
		r.Payload = []byte(fmt.Sprintf(`{"n":%d,"pad":"%01500d"}`, i, 0))
		return r
	}
	var recs []Record
	for i := 1; i <= 10; i++ {
		recs = append(recs, big(i))
	}
	acked := appendWait(t, s, recs...)
	failNextSync(s)
	recs = nil
	for i := 11; i <= 15; i++ {
		recs = append(recs, big(i))
	}
	if _, err := s.Append(recs).Wait(); !errors.Is(err, syscall.EIO) || !errors.Is(err, ErrReadOnly) {
		t.Fatalf("append whose sync failed: %v", err)
	}
	if seq, _ := s.Head(); seq != 10 {
		t.Fatalf("head %d", seq)
	}
	if n := len(allEvents(t, s)); n != 10 {
		t.Fatalf("%d events readable", n)
	}
	if _, err := s.HashAt(11); !errors.Is(err, ErrNotFound) {
		t.Fatalf("HashAt(11): %v", err)
	}
	if rep, err := s.Verify(); err != nil || !rep.OK() || rep.LastSeq != 10 {
		t.Fatalf("verify: %v %+v", err, rep)
	}
	if err := s.Recover(); err != nil {
		t.Fatal(err)
	}
	// Right after Recover the failed events still lie in freed pages.
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(testtemp.Dir(t), FileName)
	if err := os.WriteFile(cp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	sv, err := SalvageFile(cp)
	if err != nil {
		t.Fatal(err)
	}
	if len(sv.Chain) != 10 || sv.Highest != 10 || sv.Discarded == 0 {
		t.Fatalf("salvage right after recover: %d events, highest %d, %d discarded: the failed commit must be left out", len(sv.Chain), sv.Highest, sv.Discarded)
	}
	next := appendWait(t, s, rec(100), rec(101))
	if next[0].Seq != 11 || next[0].PrevHash != acked[9].Hash {
		t.Fatalf("after recover: %+v", next[0])
	}
	want := allEvents(t, s)
	s.Close()
	s2, err := Open(dir, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := allEvents(t, s2); len(got) != 12 {
		t.Fatalf("after a reopen: %d events", len(got))
	}
	s2.Close()
	sv, err = SalvageFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if len(sv.Chain) != 12 || sv.Highest != 12 {
		t.Fatalf("salvage: %d events, highest %d; damage %q", len(sv.Chain), sv.Highest, sv.Damage)
	}
	for i := range want {
		if !bytes.Equal(sv.Chain[i], want[i]) {
			t.Fatalf("salvaged event %d differs", i+1)
		}
	}
	t.Logf("salvage left out %d envelope(s) of the failed commit", sv.Discarded)
}
