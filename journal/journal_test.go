package journal

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/zlayer/overlayd/tools/testtemp"
	"math/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zlayer/overlayd/tools/testseed"
)

func rec(i int) Record {
	return Record{Type: "test_event", Version: 1, Cause: Cause{Op: "test", RequestID: uint64(i), HasPeer: true, UID: 0, PID: 42},
		Payload: []byte(fmt.Sprintf(`{"n":%d}`, i))}
}

type opener func(t *testing.T) Store

func stores(t *testing.T) map[string]opener {
	return map[string]opener{
		"mem": func(t *testing.T) Store { return NewMem() },
		"bolt": func(t *testing.T) Store {
			s, err := Open(testtemp.Dir(t), Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	}
}

func TestAppendIterateVerify(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			var commits []*Commit
			for i := 0; i < 50; i++ {
				commits = append(commits, s.Append([]Record{rec(2 * i), rec(2*i + 1)}))
			}
			for i, c := range commits {
				envs, err := c.Wait()
				if err != nil {
					t.Fatal(err)
				}
				if len(envs) != 2 || envs[0].Seq != uint64(2*i+1) || envs[1].PrevHash != envs[0].Hash {
					t.Fatalf("commit %d: %+v", i, envs)
				}
			}
			n := 0
			err := s.Iterate(0, true, func(e *Envelope) error {
				n++
				if e.Seq != uint64(n) || !bytes.Equal(e.Payload, rec(n-1).Payload) || e.Cause.PID != 42 || !e.Cause.HasPeer {
					return fmt.Errorf("event %d: %+v", n, e)
				}
				return nil
			})
			if err != nil || n != 100 {
				t.Fatalf("iterate: %d events, %v", n, err)
			}
			n = 0
			if err := s.Iterate(90, true, func(e *Envelope) error { n++; return nil }); err != nil || n != 10 {
				t.Fatalf("iterate from 90: %d, %v", n, err)
			}
			rep, err := s.Verify()
			if err != nil || !rep.OK() || rep.Events != 100 || rep.LastSeq != 100 {
				t.Fatalf("verify: %+v %v", rep, err)
			}
			if seq, h := s.Head(); seq != 100 {
				t.Fatalf("head %d", seq)
			} else if h2, _ := s.HashAt(100); h2 != h {
				t.Fatal("HashAt(head) differs from Head")
			}
		})
	}
}

func TestConcurrentAppendersGroupCommit(t *testing.T) {
	s, err := Open(testtemp.Dir(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const writers, each = 32, 100
	var wg sync.WaitGroup
	seen := make([][]uint64, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				envs, err := s.Append([]Record{rec(w*each + i)}).Wait()
				if err != nil {
					t.Error(err)
					return
				}
				seen[w] = append(seen[w], envs[0].Seq)
			}
		}(w)
	}
	wg.Wait()
	all := map[uint64]bool{}
	for _, seqs := range seen {
		for i, q := range seqs {
			if i > 0 && q <= seqs[i-1] {
				t.Fatalf("a writer's commits went backwards: %v", seqs)
			}
			if all[q] {
				t.Fatalf("sequence %d handed out twice", q)
			}
			all[q] = true
		}
	}
	if len(all) != writers*each {
		t.Fatalf("%d sequences", len(all))
	}
	st := s.Stats()
	t.Logf("%d records in %d commits", st.Records, st.Commits)
	if st.Commits >= st.Records {
		t.Fatalf("no group commit: %d commits for %d records", st.Commits, st.Records)
	}
	if rep, err := s.Verify(); err != nil || !rep.OK() {
		t.Fatalf("verify: %v %+v", err, rep)
	}
}

func TestReopenKeepsHeadAndOrder(t *testing.T) {
	dir := testtemp.Dir(t)
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	envs, err := s.Append([]Record{rec(1), rec(2)}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if seq, h := s.Head(); seq != 2 || h != envs[1].Hash {
		t.Fatalf("head after reopen: %d", seq)
	}
	more, err := s.Append([]Record{rec(3)}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if more[0].Seq != 3 || more[0].PrevHash != envs[1].Hash || more[0].ID.Compare(envs[1].ID) <= 0 {
		t.Fatalf("continuation: %+v", more[0])
	}
	if rep, err := s.Verify(); err != nil || !rep.OK() {
		t.Fatalf("verify: %v %+v", err, rep)
	}
}

// A byte changed anywhere in any stored event makes Verify fail, and the
// first problem names that event.
func TestVerifyNamesTamperedEvent(t *testing.T) {
	dir := testtemp.Dir(t)
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var recs []Record
	for i := 0; i < 40; i++ {
		recs = append(recs, rec(i))
	}
	if _, err := s.Append(recs).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewSource(testseed.New(t)))
	for target := uint64(1); target <= 40; target++ {
		offset := -1
		if err := RawUpdate(dir+"/"+FileName, func(seq uint64, raw []byte) []byte {
			if seq != target {
				return nil
			}
			b := append([]byte(nil), raw...)
			offset = r.Intn(len(b))
			b[offset] ^= byte(1 + r.Intn(255))
			return b
		}); err != nil {
			t.Fatal(err)
		}
		ro, err := Open(dir, Options{ReadOnly: true})
		switch {
		case err != nil && target == 40:
			// Open decodes the head event: one made unreadable (a length
			// changed) may refuse the open, which must then name it.
			if !strings.Contains(err.Error(), fmt.Sprintf("event %d", target)) {
				t.Fatalf("byte %d of the head event %d changed: open fails without naming it: %v", offset, target, err)
			}
			t.Logf("byte %d of the head event changed: open refused: %v", offset, err)
		case err != nil:
			t.Fatalf("byte %d of event %d changed: open: %v", offset, target, err)
		default:
			rep, err := ro.Verify()
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() || rep.Problems[0].Seq != target {
				t.Fatalf("byte %d of event %d changed: report %+v", offset, target, rep)
			}
			if !strings.Contains(rep.Err().Error(), fmt.Sprintf("event %d ", target)) {
				t.Fatalf("error does not name event %d: %v", target, rep.Err())
			}
			if err := ro.Iterate(0, true, func(*Envelope) error { return nil }); err == nil {
				t.Fatalf("verified iteration accepted tampered event %d", target)
			}
			ro.Close()
		}
		// Restore the byte for the next round.
		if err := RawUpdate(dir+"/"+FileName, func(seq uint64, raw []byte) []byte {
			if seq != target {
				return nil
			}
			b := append([]byte(nil), raw...)
			for x := byte(1); ; x++ {
				b[offset] ^= x
				if _, err := decodeEnvelope(b, true); err == nil {
					return b
				}
				b[offset] ^= x
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSnapshotRoundTripAndCorruption(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			if sn, err := s.LoadSnapshot(); err != nil || sn != nil {
				t.Fatalf("empty store snapshot: %v %v", sn, err)
			}
			envs, err := s.Append([]Record{rec(1)}).Wait()
			if err != nil {
				t.Fatal(err)
			}
			want := &Snapshot{Schema: 7, Seq: 1, Hash: envs[0].Hash, Body: []byte(`{"x":1}`)}
			if err := s.SaveSnapshot(want); err != nil {
				t.Fatal(err)
			}
			got, err := s.LoadSnapshot()
			if err != nil || got.Schema != 7 || got.Seq != 1 || got.Hash != want.Hash || !bytes.Equal(got.Body, want.Body) {
				t.Fatalf("got %+v %v", got, err)
			}
		})
	}
	b := encodeSnapshot(&Snapshot{Schema: 1, Seq: 3, Body: []byte("hello")})
	b[len(b)-1] ^= 1
	if _, err := decodeSnapshot(b); !errors.Is(err, ErrSnapshotCorrupt) {
		t.Fatalf("corrupt snapshot accepted: %v", err)
	}
}

func TestSecondWriterIsRefused(t *testing.T) {
	dir := testtemp.Dir(t)
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	_, err = Open(dir, Options{LockTimeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "another") {
		t.Fatalf("second open: %v", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatal("second open waited too long")
	}
	if _, err := Open(dir, Options{ReadOnly: true, LockTimeout: 100 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Fatalf("read-only open while a writer holds the file: %v", err)
	}
}

func TestAppendAfterCloseFails(t *testing.T) {
	s, err := Open(testtemp.Dir(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := s.Append([]Record{rec(1)}).Wait(); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
}
