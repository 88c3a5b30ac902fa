package journal

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/zlayer/overlayd/tools/testtemp"
	"math/rand"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/zlayer/overlayd/tools/testseed"
)

// Get, Range, SeqAtTime and SeqOfID agree with a linear scan, on both
// stores.
func TestLookupsMatchScan(t *testing.T) {
	seed := testseed.New(t)
	r := rand.New(rand.NewSource(seed))
	bs := openT(t, testtemp.Dir(t), indexedOptions(r))
	mem := NewMemIndexed(testIndexer)
	mem.ids.clock = testClock(rand.New(rand.NewSource(seed)))
	fillRandom(t, r, 800+r.Intn(400), bs, mem)
	for name, s := range map[string]Indexed{"bolt": bs, "mem": mem} {
		t.Run(name, func(t *testing.T) {
			var all []Envelope
			if err := s.Iterate(0, true, func(e *Envelope) error {
				c := *e
				c.Payload = slices.Clone(e.Payload)
				all = append(all, c)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			head := uint64(len(all))
			for _, seq := range []uint64{1, head / 2, head} {
				e, err := s.Get(seq)
				if err != nil || e.Seq != seq || e.Hash != all[seq-1].Hash || !bytes.Equal(e.Payload, all[seq-1].Payload) {
					t.Fatalf("Get(%d): %+v, %v", seq, e, err)
				}
			}
			for _, seq := range []uint64{0, head + 1} {
				if _, err := s.Get(seq); !errors.Is(err, ErrNotFound) {
					t.Fatalf("Get(%d): %v", seq, err)
				}
			}
			for range 50 {
				from, to, rev := uint64(r.Int63n(int64(head)+2)), uint64(r.Int63n(int64(head)+2)), r.Intn(2) == 0
				var want, got []uint64
				for _, e := range all {
					if e.Seq >= max(from, 1) && (to == 0 || e.Seq <= to) {
						want = append(want, e.Seq)
					}
				}
				if rev {
					slices.Reverse(want)
				}
				if err := s.Range(from, to, rev, func(e *Envelope) error {
					if e.Hash != all[e.Seq-1].Hash {
						return fmt.Errorf("event %d differs", e.Seq)
					}
					got = append(got, e.Seq)
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, want) {
					t.Fatalf("Range(%d, %d, %v) = %v, want %v", from, to, rev, got, want)
				}
			}
			// Times: before the first, each event's own (equal times within
			// a commit and across), between, after the last.
			probes := []time.Time{all[0].Time.Add(-time.Nanosecond), all[head-1].Time.Add(time.Hour)}
			for range 100 {
				e := all[r.Intn(len(all))]
				probes = append(probes, e.Time, e.Time.Add(-time.Nanosecond), e.Time.Add(time.Duration(r.Intn(2_000_000))))
			}
			for _, p := range probes {
				var want uint64
				for _, e := range all {
					if !e.Time.After(p) {
						want = e.Seq
					}
				}
				if got, err := s.SeqAtTime(p); err != nil || got != want {
					t.Fatalf("SeqAtTime(%v) = %d, %v; want %d", p, got, err, want)
				}
			}
			for range 100 {
				e := all[r.Intn(len(all))]
				if got, err := s.SeqOfID(e.ID); err != nil || got != e.Seq {
					t.Fatalf("SeqOfID(%s) = %d, %v; want %d", e.ID, got, err, e.Seq)
				}
				other := e.ID
				other[15] ^= 0x80 // same millisecond, not an event's
				if slices.ContainsFunc(all, func(x Envelope) bool { return x.ID == other }) {
					continue
				}
				if _, err := s.SeqOfID(other); !errors.Is(err, ErrNotFound) {
					t.Fatalf("SeqOfID(%s), no such event: %v", other, err)
				}
			}
			if _, err := s.SeqOfID(ulid.ULID{}); !errors.Is(err, ErrNotFound) {
				t.Fatalf("SeqOfID(zero): %v", err)
			}
		})
	}
}

// oldEnvelope encodes e as the code before Cause.Exe did, written out from
// doc.go's layout.
func oldEnvelope(e *Envelope) []byte {
	b := []byte{1}
	b = append(b, e.ID[:]...)
	b = binary.BigEndian.AppendUint64(b, e.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time.UnixNano()))
	b = binary.BigEndian.AppendUint16(b, e.Version)
	b = append(b, 1<<1) // has peer
	b = appendStr(b, e.Type)
	b = appendStr(b, e.Cause.Op)
	b = binary.BigEndian.AppendUint64(b, e.Cause.RequestID)
	b = binary.BigEndian.AppendUint32(b, e.Cause.UID)
	b = binary.BigEndian.AppendUint32(b, e.Cause.PID)
	b = appendStr(b, string(e.Payload))
	b = append(b, e.PrevHash[:]...)
	h := sha256.Sum256(b)
	return append(b, h[:]...)
}

func TestCauseExe(t *testing.T) {
	e := Envelope{ID: ulid.Make(), Seq: 3, Time: time.Unix(0, 1234), Type: "ip_allocated", Version: 2,
		Cause: Cause{Op: "allocate_ip", RequestID: 9, HasPeer: true, UID: 1000, PID: 4321}, Payload: []byte(`{"ip":"10.0.0.1"}`)}
	old := oldEnvelope(&e)
	// Without an executable, the encoding is the one before Exe.
	if enc := e.Encode(); !bytes.Equal(enc, old) {
		t.Fatalf("an envelope without Exe encodes as\n%x\nnot as before\n%x", enc, old)
	}
	d, err := DecodeEnvelope(old)
	if err != nil || d.Cause.Exe != "" || d.Cause.PID != 4321 || !bytes.Equal(d.Payload, e.Payload) {
		t.Fatalf("old envelope: %+v, %v", d, err)
	}
	e.Cause.Exe = "/usr/local/bin/zlayer-agent"
	enc := e.Encode()
	if enc[1+16+8+8+2]&flagExe == 0 {
		t.Fatal("flag bit 2 not set")
	}
	d, err = DecodeEnvelope(enc)
	if err != nil || d.Cause != e.Cause || !bytes.Equal(d.Payload, e.Payload) {
		t.Fatalf("round trip: %+v, %v", d, err)
	}
	// A decode into a reused envelope does not keep an earlier Exe.
	if err := decodeInto(d, old, true); err != nil || d.Cause.Exe != "" {
		t.Fatalf("reused envelope: %q, %v", d.Cause.Exe, err)
	}
	// Through the store.
	s := openT(t, testtemp.Dir(t), Options{})
	envs := appendWait(t, s, Record{Type: "t", Version: 1, Cause: e.Cause, Payload: []byte("{}")}, rec(1))
	got, err := s.Get(envs[0].Seq)
	if err != nil || got.Cause != e.Cause {
		t.Fatalf("stored: %+v, %v", got, err)
	}
	if got, _ := s.Get(envs[1].Seq); got.Cause.Exe != "" {
		t.Fatalf("an event without Exe reads back %q", got.Cause.Exe)
	}
	if rep, err := s.Verify(); err != nil || !rep.OK() {
		t.Fatalf("verify: %v %v", rep, err)
	}
}

// rawIndexKeys lists the index keys past seq in the file.
func rawIndexKeys(t *testing.T, path string, after uint64) []string {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var out []string
	db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketIndex).ForEach(func(k, _ []byte) error {
			if term, seq, ok := splitPosting(k); ok && seq > after {
				out = append(out, fmt.Sprintf("%s@%d", term, seq))
			}
			return nil
		})
	})
	return out
}

// Recover removes the index keys of the events it cuts back (a commit
// whose sync failed but which reached the file): an event committed later
// at the same sequence is not found under their terms. Both ways of
// finding them: from the events' terms, and (when those cannot be
// computed) by walking every term.
func TestRecoverRemovesIndexOfDiscardedEvents(t *testing.T) {
	for _, walk := range []bool{false, true} {
		t.Run(fmt.Sprintf("walk=%v", walk), func(t *testing.T) {
			dir := testtemp.Dir(t)
			ix := func(typ string, ver uint16, payload []byte) []string {
				if walk && strings.Contains(string(payload), "ghost") {
					panic("indexer broken")
				}
				return testIndexer(typ, ver, payload)
			}
			s := openT(t, dir, Options{Indexer: ix, IndexVersion: 1})
			r := opRecord
			appendWait(t, s, r("a", "ip:1,service:web"), r("a", "ip:2"))
			snapHash, _ := s.HashAt(2)
			if err := s.PutState(&Snapshot{Schema: 1, Seq: 2, Hash: snapHash, Body: []byte("state@2")}); err != nil {
				t.Fatal(err)
			}
			failNextSync(s)
			if _, err := s.Append([]Record{r("ghost_op", "ghost:1,ip:1"), r("ghost_op", "ghost:2")}).Wait(); !errors.Is(err, ErrReadOnly) {
				t.Fatalf("append whose sync failed: %v", err)
			}
			if got := postings(t, s, "ip:1", 0, 0, false); !slices.Equal(got, []uint64{1}) {
				t.Fatalf("before Recover, ip:1 = %v: an unacknowledged event is visible", got)
			}
			if st := s.IndexStatus(); !st.Ready || st.Through > 2 {
				t.Fatalf("after the failed commit: %+v", st)
			}
			if err := s.Recover(); err != nil {
				t.Fatal(err)
			}
			appendWait(t, s, r("b", "ip:3"), r("b", "ip:4"))
			for term, want := range map[string][]uint64{"ghost:1": nil, "ghost:2": nil, "op:ghost_op": nil, "ip:1": {1}, "ip:3": {3}, "op:b": {3, 4}} {
				if got := postings(t, s, term, 0, 0, false); !slices.Equal(got, want) {
					t.Errorf("after Recover, %s = %v, want %v", term, got, want)
				}
			}
			if st := s.IndexStatus(); !st.Ready || st.Through > 4 {
				t.Fatalf("after Recover and a commit: %+v", st)
			}
			if sn, err := s.StateAtOrBefore(4); err != nil || sn == nil || sn.Seq != 2 {
				t.Fatalf("retained state after Recover: %+v %v", sn, err)
			}
			s.Close()
			keys := rawIndexKeys(t, filepath.Join(dir, FileName), 2)
			slices.Sort(keys)
			if want := []string{"ip:3@3", "ip:4@4", "op:b@3", "op:b@4", "type:ev@3", "type:ev@4"}; !slices.Equal(keys, want) {
				t.Fatalf("index keys past 2 in the file: %q, want %q", keys, want)
			}
		})
	}
}

func TestRetainedStates(t *testing.T) {
	dir := testtemp.Dir(t)
	s := openT(t, dir, Options{})
	envs := appendWait(t, s, rec(1), rec(2), rec(3), rec(4), rec(5))
	for name, st := range map[string]Indexed{"bolt": s, "mem": NewMem()} {
		t.Run(name, func(t *testing.T) {
			if st != Indexed(s) {
				appendWait(t, st, rec(1), rec(2), rec(3), rec(4), rec(5))
			}
			hash := func(seq uint64) [32]byte { h, _ := st.HashAt(seq); return h }
			for _, seq := range []uint64{2, 4} {
				if err := st.PutState(&Snapshot{Schema: 7, Seq: seq, Hash: hash(seq), Body: []byte(fmt.Sprintf("body %d", seq))}); err != nil {
					t.Fatal(err)
				}
			}
			for at, want := range map[uint64]uint64{0: 0, 1: 0, 2: 2, 3: 2, 4: 4, 5: 4, 99: 4} {
				sn, err := st.StateAtOrBefore(at)
				switch {
				case err != nil:
					t.Fatal(err)
				case want == 0 && sn != nil:
					t.Fatalf("StateAtOrBefore(%d) = %d, want none", at, sn.Seq)
				case want != 0 && (sn == nil || sn.Seq != want || sn.Schema != 7 || string(sn.Body) != fmt.Sprintf("body %d", want) || sn.Hash != hash(want) || sn.Journal != st.Identity().ID):
					t.Fatalf("StateAtOrBefore(%d) = %+v, want the state at %d", at, sn, want)
				}
			}
			if err := st.PutState(&Snapshot{Seq: 6}); !errors.Is(err, ErrSnapshotAhead) {
				t.Fatalf("a state past head: %v", err)
			}
			if err := st.PutState(&Snapshot{Seq: 3, Hash: hash(2)}); !errors.Is(err, ErrHashMismatch) {
				t.Fatalf("a state with another event's hash: %v", err)
			}
		})
	}
	s.Close()
	// They last, and a changed byte is found.
	s = openT(t, dir, Options{ReadOnly: true})
	if sn, err := s.StateAtOrBefore(3); err != nil || sn == nil || sn.Seq != 2 || sn.Hash != envs[1].Hash {
		t.Fatalf("after a reopen: %+v %v", sn, err)
	}
	s.Close()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketStates)
		v := slices.Clone(b.Get(seqKey(4)))
		v[len(v)-1] ^= 1
		return b.Put(seqKey(4), v)
	})
	db.Close()
	s = openT(t, dir, Options{ReadOnly: true})
	if _, err := s.StateAtOrBefore(5); !errors.Is(err, ErrSnapshotCorrupt) {
		t.Fatalf("a changed retained state: %v", err)
	}
}

// Faulty answers the index reads of the store it wraps, and refuses
// PutState while it is read-only.
func TestFaultyIndexed(t *testing.T) {
	f := NewFaulty(NewMemIndexed(testIndexer))
	t.Cleanup(func() { f.Close() })
	envs := appendWait(t, f, Record{Type: "ev", Cause: Cause{Op: "a"}, Payload: []byte("ip:1")}, rec(1))
	if got := postings(t, f, "ip:1", 0, 0, false); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("Postings through Faulty: %v", got)
	}
	if e, err := f.Get(2); err != nil || e.Hash != envs[1].Hash {
		t.Fatalf("Get through Faulty: %v", err)
	}
	f.FailNext(1, syscall.EIO)
	if _, err := f.Append([]Record{rec(2)}).Wait(); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("failed append: %v", err)
	}
	if err := f.PutState(&Snapshot{Seq: 1, Hash: envs[0].Hash}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("PutState on a read-only Faulty: %v", err)
	}
	if err := f.Recover(); err != nil {
		t.Fatal(err)
	}
	if err := f.PutState(&Snapshot{Seq: 1, Hash: envs[0].Hash}); err != nil {
		t.Fatalf("PutState after Recover: %v", err)
	}
}

// An indexer that found the journal read-only and is on its way out when
// Recover makes the journal writable again must not leave it without an
// indexer: CI caught TestRecoverRemovesIndexOfDiscardedEvents closing a
// recovered journal with nothing past the failed commit indexed. Here
// Recover runs exactly in that window (from the indexer's own goroutine,
// which holds no lock there), and the index must still reach the head.
func TestIndexerRestartsAfterRecoverInItsExit(t *testing.T) {
	s, path := indexedThroughTwo(t)
	r := opRecord
	recovered := make(chan error, 1)
	indexPausedHook = func(hs *BoltStore) {
		if hs.path == path {
			select {
			case recovered <- hs.Recover():
			default:
			}
		}
	}
	t.Cleanup(func() { indexPausedHook = nil })
	failNextSync(s)
	if _, err := s.Append([]Record{r("ghost_op", "ghost:1")}).Wait(); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("append whose sync failed: %v", err)
	}
	s.kickIndexer()
	select {
	case err := <-recovered:
		if err != nil {
			t.Fatalf("Recover from the indexer's exit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the indexer never saw the read-only journal")
	}
	appendWait(t, s, r("b", "ip:3"), r("b", "ip:4"))
	waitIndexed(t, s)
	s.Close()
	keys := rawIndexKeys(t, path, 2)
	slices.Sort(keys)
	if want := []string{"ip:3@3", "ip:4@4", "op:b@3", "op:b@4", "type:ev@3", "type:ev@4"}; !slices.Equal(keys, want) {
		t.Fatalf("index keys past 2 in the file: %q, want %q", keys, want)
	}
}

// A Close that arrives just as the indexer woke to catch up (its stop
// closed before its first batch) still leaves the file indexed to the
// head, as a Close that finds the indexer waiting does: the second cause
// CI found for TestRecoverRemovesIndexOfDiscardedEvents closing with
// nothing indexed past 2.
func TestCloseAsTheIndexerWakesIndexesToTheHead(t *testing.T) {
	s, path := indexedThroughTwo(t)
	r := opRecord
	reached := make(chan struct{})
	var once sync.Once
	indexerLoopHook = func(hs *BoltStore, stop chan struct{}) {
		if hs.path != path || hs.IndexStatus().Through == headOf(hs) {
			return
		}
		once.Do(func() {
			close(reached)
			<-stop // Close closes it
		})
	}
	t.Cleanup(func() { indexerLoopHook = nil })
	appendWait(t, s, r("b", "ip:3"), r("b", "ip:4"))
	select {
	case <-reached:
	case <-time.After(10 * time.Second):
		t.Fatal("the indexer never woke for the new events")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	keys := rawIndexKeys(t, path, 2)
	slices.Sort(keys)
	if want := []string{"ip:3@3", "ip:4@4", "op:b@3", "op:b@4", "type:ev@3", "type:ev@4"}; !slices.Equal(keys, want) {
		t.Fatalf("index keys past 2 in the file: %q, want %q", keys, want)
	}
}

// opRecord is an event of type "ev" sent by op, whose payload lists its
// index terms (testIndexer).
func opRecord(op, terms string) Record {
	return Record{Type: "ev", Version: 1, Cause: Cause{Op: op}, Payload: []byte(terms)}
}

// failNextSync makes s's next fdatasync fail with EIO, once.
func failNextSync(s *BoltStore) {
	fail := true
	s.faultHook = func(op string) error {
		if op == "synced" && fail {
			fail = false
			return fmt.Errorf("fdatasync: %w", syscall.EIO)
		}
		return nil
	}
}

// indexedThroughTwo opens an indexed journal in a new directory with two
// events, both indexed, and returns it with its file's path.
func indexedThroughTwo(t *testing.T) (*BoltStore, string) {
	dir := testtemp.Dir(t)
	s := openT(t, dir, Options{Indexer: testIndexer, IndexVersion: 1})
	appendWait(t, s, opRecord("a", "ip:1"), opRecord("a", "ip:2"))
	waitIndexed(t, s)
	return s, filepath.Join(dir, FileName)
}
