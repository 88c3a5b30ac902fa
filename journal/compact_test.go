package journal

import (
	"errors"
	"fmt"
	"github.com/zlayer/overlayd/tools/testtemp"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fill appends n events to s in batches.
func fillN(t testing.TB, s Store, from, n int) {
	t.Helper()
	var commits []*Commit
	for i := 0; i < n; i += 500 {
		recs := make([]Record, 0, 500)
		for j := i; j < min(i+500, n); j++ {
			recs = append(recs, rec(from+j))
		}
		commits = append(commits, s.Append(recs))
	}
	for _, c := range commits {
		if _, err := c.Wait(); err != nil {
			t.Fatal(err)
		}
	}
}

func openC(t *testing.T, dir string, opt Options) *BoltStore {
	t.Helper()
	s, err := Open(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func fakeState(seq uint64) CheckpointState {
	return CheckpointState{Schema: 7, Body: []byte(strings.Repeat("state-at-", 10) + string(rune('0'+seq%10)))}
}

// TestCompactKeepsTheChainFromTheCheckpoint: after a compaction at 15000
// of 20000 events the journal holds 15001..20000, Iterate and HashAt say
// so, Verify proves the chain from the checkpoint, the archive verifies on
// its own and as the chain from event 1 ending at the checkpoint, the file
// shrank, and all of it survives a reopen; appends go on.
func TestCompactKeepsTheChainFromTheCheckpoint(t *testing.T) {
	dir := testtemp.Dir(t)
	s := openC(t, dir, Options{NoSync: true})
	fillN(t, s, 1, 20000)
	head, headHash := s.Head()
	h15k, _ := s.HashAt(15000)
	for _, at := range []uint64{10000, 17000} {
		h, _ := s.HashAt(at)
		if err := s.PutState(&Snapshot{Schema: 7, Seq: at, Hash: h, Body: []byte("kept")}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := s.Compact(15000, fakeState(15000))
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 15000 || res.BytesAfter >= res.BytesBefore {
		t.Fatalf("result %+v: want 15000 events archived and a smaller file", res)
	}
	t.Logf("compacted: %d events, %d -> %d bytes, archive %d bytes, took %v (held %v)", res.Events, res.BytesBefore, res.BytesAfter, res.ArchiveBytes, res.Took, res.Held)
	check := func(s *BoltStore) {
		t.Helper()
		if h, hh := s.Head(); h != head || hh != headHash {
			t.Fatalf("head %d, want %d", h, head)
		}
		ck := s.Checkpoint()
		if ck == nil || ck.Seq != 15000 || ck.Hash != h15k || ck.Archive().Name != filepath.Base(res.Archive) {
			t.Fatalf("checkpoint %+v", ck)
		}
		var first, n uint64
		if err := s.Iterate(10, true, func(e *Envelope) error {
			if first == 0 {
				first = e.Seq
			}
			n++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if first != 15001 || n != 5000 {
			t.Fatalf("Iterate(10) from %d, %d events; want 15001, 5000", first, n)
		}
		if h, err := s.HashAt(15000); err != nil || h != h15k {
			t.Fatalf("HashAt(15000) = %x, %v", h[:4], err)
		}
		if _, err := s.HashAt(14999); !errors.Is(err, ErrCompacted) || !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), ck.Archive().Name) {
			t.Fatalf("HashAt(14999): %v", err)
		}
		// The index and the retained states lost what is at or before
		// the checkpoint, and kept the rest.
		// The indexer runs behind the commits: wait for it to reach the
		// head (it must get there from the copied index record).
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			st := s.IndexStatus()
			if st.Ready && st.Through == head {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("index status %+v, head %d", st, head)
			}
		}
		var postings, lowest uint64
		if err := s.Postings("type:test_event", 0, 0, false, func(seq uint64) error {
			if postings == 0 {
				lowest = seq
			}
			postings++
			return nil
		}); err != nil || postings != 5000 || lowest != 15001 {
			t.Fatalf("postings of type:test_event: %d from %d, %v", postings, lowest, err)
		}
		if sn, err := s.StateAtOrBefore(16000); err != nil || sn != nil {
			t.Fatalf("a retained state at or before the checkpoint survived: %+v %v", sn, err)
		}
		if sn, err := s.StateAtOrBefore(18000); err != nil || sn == nil || sn.Seq != 17000 {
			t.Fatalf("the retained state at 17000: %+v %v", sn, err)
		}
		if _, err := s.Get(100); !errors.Is(err, ErrCompacted) {
			t.Fatalf("Get(100): %v", err)
		}
		rep, err := s.Verify()
		if err != nil || !rep.OK() || rep.CheckpointSeq != 15000 || rep.FirstSeq != 15001 || rep.LastSeq != head {
			t.Fatalf("verify: %+v %v", rep, err)
		}
		var seen uint64
		if _, err := VerifyArchives(filepath.Join(dir, ArchiveDirName), ck, func(e *Envelope) error { seen++; return nil }); err != nil || seen != 15000 {
			t.Fatalf("archives: %v (%d events)", err, seen)
		}
	}
	check(s)
	s.Close()
	s = openC(t, dir, Options{NoSync: true})
	check(s)
	fillN(t, s, 20001, 10)
	if rep, err := s.Verify(); err != nil || !rep.OK() || rep.LastSeq != 20010 {
		t.Fatalf("verify after more appends: %+v %v", rep, err)
	}

	// A second compaction chains a second archive to the first.
	res2, err := s.Compact(18000, fakeState(18000))
	if err != nil {
		t.Fatal(err)
	}
	ck := res2.Checkpoint
	if len(ck.Archives) != 2 || ck.Archives[1].First != 15001 || ck.Archives[1].PrevHash != h15k {
		t.Fatalf("second checkpoint archives %+v", ck.Archives)
	}
	var seen uint64
	if _, err := VerifyArchives(filepath.Join(dir, ArchiveDirName), ck, func(e *Envelope) error {
		seen++
		if e.Seq != seen {
			t.Fatalf("archived event %d, want %d", e.Seq, seen)
		}
		return nil
	}); err != nil || seen != 18000 {
		t.Fatalf("two archives: %v (%d events)", err, seen)
	}
	if rep, err := s.Verify(); err != nil || !rep.OK() || rep.FirstSeq != 18001 {
		t.Fatalf("verify after the second compaction: %+v %v", rep, err)
	}
}

// TestCompactToTheHead: compacting every event leaves a journal of none,
// whose head is the checkpoint, across a reopen, and appends link to it.
func TestCompactToTheHead(t *testing.T) {
	dir := testtemp.Dir(t)
	s := openC(t, dir, Options{NoSync: true})
	fillN(t, s, 1, 300)
	head, hh := s.Head()
	if _, err := s.Compact(head, fakeState(head)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openC(t, dir, Options{NoSync: true})
	if h, h2 := s.Head(); h != head || h2 != hh {
		t.Fatalf("head %d after reopen, want %d", h, head)
	}
	if rep, err := s.Verify(); err != nil || !rep.OK() || rep.Events != 0 || rep.LastSeq != head {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	fillN(t, s, 301, 5)
	if rep, err := s.Verify(); err != nil || !rep.OK() || rep.FirstSeq != 301 || rep.LastSeq != 305 {
		t.Fatalf("verify after appends: %+v %v", rep, err)
	}
	if _, err := s.Compact(head, fakeState(head)); !errors.Is(err, ErrCompactRange) {
		t.Fatalf("compacting the same point again: %v", err)
	}
}

// TestCompactTamperIsNamed: a changed byte in the archive names the
// archive and the event; in the checkpoint's state, the checkpoint.
func TestCompactTamperIsNamed(t *testing.T) {
	dir := testtemp.Dir(t)
	s := openC(t, dir, Options{NoSync: true})
	fillN(t, s, 1, 2000)
	res, err := s.Compact(1500, fakeState(1500))
	if err != nil {
		t.Fatal(err)
	}
	ck := s.Checkpoint()
	s.Close()
	adir := filepath.Join(dir, ArchiveDirName)

	// The archive: a byte of event 523's payload.
	b, _ := os.ReadFile(res.Archive)
	orig := append([]byte(nil), b...)
	off := archiveOffsetOf(t, b, 523) + 60
	b[off] ^= 0x20
	os.WriteFile(res.Archive, b, 0o600)
	_, err = VerifyArchives(adir, ck, nil)
	if !errors.Is(err, ErrArchive) || !strings.Contains(err.Error(), "archive "+ck.Archive().Name+": event 523: ") || !strings.Contains(err.Error(), "hash mismatch") {
		t.Fatalf("tampered archive: %v", err)
	}
	t.Logf("archive: %v", err)
	os.WriteFile(res.Archive, orig, 0o600)
	// A byte of the trailer's digest.
	b = append([]byte(nil), orig...)
	b[len(b)-3] ^= 1
	os.WriteFile(res.Archive, b, 0o600)
	if _, err := VerifyArchive(res.Archive, nil); !errors.Is(err, ErrArchive) || !strings.Contains(err.Error(), "digest") {
		t.Fatalf("tampered digest: %v", err)
	}
	os.WriteFile(res.Archive, orig, 0o600)

	// The checkpoint: a byte of its state.
	if err := RawUpdateMeta(filepath.Join(dir, FileName), "checkpoint", func(v []byte) []byte {
		v[len(v)-40] ^= 1
		return v
	}); err != nil {
		t.Fatal(err)
	}
	s = openC(t, dir, Options{ReadOnly: true})
	rep, err := s.Verify()
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || !strings.Contains(rep.Problems[0].Err, "checkpoint at 1500: state does not match its hash") {
		t.Fatalf("tampered checkpoint: %+v", rep.Problems)
	}
	t.Logf("checkpoint: %s", rep.Problems[0].Err)
}

// archiveOffsetOf is the offset of event seq's record in an archive's bytes.
func archiveOffsetOf(t *testing.T, b []byte, seq uint64) int {
	off := 4 + 1 + 16 + 8 + 8 + 32 + 8
	for s := uint64(1); s < seq; s++ {
		n := int(b[off])<<24 | int(b[off+1])<<16 | int(b[off+2])<<8 | int(b[off+3])
		off += 4 + n
	}
	return off + 4
}

// TestCompactFailureLeavesTheJournal: a fault while the archive is
// written, while the file is rewritten, or at the swap leaves the journal
// as it was, writable, without temporary files; nothing acknowledged is
// lost, and a later compaction succeeds.
func TestCompactFailureLeavesTheJournal(t *testing.T) {
	for _, op := range []string{"compact-archive", "compact-rewrite", "compact-swap"} {
		t.Run(op, func(t *testing.T) {
			dir := testtemp.Dir(t)
			s := openC(t, dir, Options{NoSync: true})
			fillN(t, s, 1, 3000)
			s.faultHook = func(o string) error {
				if o == op {
					return errors.New("injected: no space left on device")
				}
				return nil
			}
			_, err := s.Compact(2000, fakeState(2000))
			if err == nil || !strings.Contains(err.Error(), "unchanged") {
				t.Fatalf("compaction with a fault at %s: %v", op, err)
			}
			t.Logf("%s: %v", op, err)
			s.faultHook = nil
			if s.Checkpoint() != nil || !s.Health().OK() {
				t.Fatalf("after a failed compaction: checkpoint %v, health %v", s.Checkpoint(), s.Health())
			}
			fillN(t, s, 3001, 10)
			if rep, err := s.Verify(); err != nil || !rep.OK() || rep.FirstSeq != 1 || rep.LastSeq != 3010 {
				t.Fatalf("verify: %+v %v", rep, err)
			}
			if _, err := os.Stat(filepath.Join(dir, FileName+".compact")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the rewrite's temporary file is left: %v", err)
			}
			ents, _ := os.ReadDir(filepath.Join(dir, ArchiveDirName))
			for _, e := range ents {
				if strings.HasSuffix(e.Name(), ".tmp") {
					t.Fatalf("archive temporary file left: %s", e.Name())
				}
			}
			if _, err := s.Compact(2000, fakeState(2000)); err != nil {
				t.Fatalf("compaction after the fault: %v", err)
			}
			s.Close()
			s = openC(t, dir, Options{NoSync: true})
			if rep, err := s.Verify(); err != nil || !rep.OK() || rep.FirstSeq != 2001 || rep.LastSeq != 3010 {
				t.Fatalf("verify after reopen: %+v %v", rep, err)
			}
		})
	}
}

// TestCompactWhileAppending: appends running during a compaction are all
// acknowledged and all in the compacted journal, in order.
func TestCompactWhileAppending(t *testing.T) {
	dir := testtemp.Dir(t)
	s := openC(t, dir, Options{NoSync: true})
	fillN(t, s, 1, 10000)
	done := make(chan struct{})
	var acked []uint64
	go func() {
		defer close(done)
		for i := 0; i < 400; i++ {
			envs, err := s.Append([]Record{rec(10001 + i)}).Wait()
			if err != nil {
				t.Error(err)
				return
			}
			acked = append(acked, envs[0].Seq)
		}
	}()
	if _, err := s.Compact(8000, fakeState(8000)); err != nil {
		t.Fatal(err)
	}
	<-done
	head, _ := s.Head()
	if head != 10400 || acked[len(acked)-1] != 10400 {
		t.Fatalf("head %d, last acked %d", head, acked[len(acked)-1])
	}
	s.Close()
	s = openC(t, dir, Options{ReadOnly: true})
	if rep, err := s.Verify(); err != nil || !rep.OK() || rep.FirstSeq != 8001 || rep.LastSeq != 10400 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	// The index holds every event left, those committed during the
	// compaction too, and nothing else.
	if st := s.IndexStatus(); !st.Ready {
		t.Fatalf("index %+v", st)
	}
	for _, term := range []string{"type:test_event", "op:test"} {
		want := uint64(8001)
		if err := s.Postings(term, 0, 0, false, func(seq uint64) error {
			if seq != want {
				t.Fatalf("postings of %s: %d, want %d", term, seq, want)
			}
			want++
			return nil
		}); err != nil || want != 10401 {
			t.Fatalf("postings of %s end before %d: %v", term, want, err)
		}
	}
}

// copyDir copies the regular files of src (and one level of
// subdirectories) to dst: what a crash at this instant leaves on disk
// (every file compaction writes is synced before the next step).
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(dst, 0o700)
	for _, e := range ents {
		if e.IsDir() {
			copyDir(t, filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()))
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCompactCrashWindows: a crash at either failpoint of a compaction
// (half of the archive written; the rewritten file complete, not yet
// renamed) leaves the journal as it was: every event, no checkpoint, the
// chain from event 1; and a compaction of the crashed copy succeeds
// (replacing what the crash left).
func TestCompactCrashWindows(t *testing.T) {
	for _, fp := range []string{"journal/compact-archive", "journal/compact-swap"} {
		t.Run(fp, func(t *testing.T) {
			dir := testtemp.Dir(t)
			crashed := filepath.Join(testtemp.Dir(t), "crashed")
			s := openC(t, dir, Options{})
			fillN(t, s, 1, 4000)
			// The indexer idle first: it reads Failpoint too.
			waitIndexedTo(t, s, 4000)
			hit := false
			Failpoint = func(name string) {
				if name == fp && !hit {
					hit = true
					copyDir(t, dir, crashed)
				}
			}
			defer func() { Failpoint = nil }()
			if _, err := s.Compact(3000, fakeState(3000)); err != nil {
				t.Fatal(err)
			}
			Failpoint = nil
			if !hit {
				t.Fatalf("failpoint %s was not hit", fp)
			}
			s.Close()
			c := openC(t, crashed, Options{})
			if c.Checkpoint() != nil {
				t.Fatal("the crashed copy has a checkpoint")
			}
			if rep, err := c.Verify(); err != nil || !rep.OK() || rep.FirstSeq != 1 || rep.LastSeq != 4000 {
				t.Fatalf("the crashed copy: %+v %v", rep, err)
			}
			if _, err := c.Compact(3000, fakeState(3000)); err != nil {
				t.Fatalf("compaction of the crashed copy: %v", err)
			}
			if _, err := os.Stat(filepath.Join(crashed, FileName+".compact")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the rewrite's temporary file is left: %v", err)
			}
			if _, err := VerifyArchives(filepath.Join(crashed, ArchiveDirName), c.Checkpoint(), nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// waitIndexedTo waits until s's index covers head.
func waitIndexedTo(t *testing.T, s *BoltStore, head uint64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); s.IndexStatus().Through < head; time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("index %+v, want through %d", s.IndexStatus(), head)
		}
	}
}

// TestCompactCarriesTermsIndexedAfterTheBulkCopy: events committed and
// indexed between the bulk copy and the hold bring new terms; the
// compacted file's terms bucket has them (it is copied by the delta's
// terms, not again in full) and their postings answer.
func TestCompactCarriesTermsIndexedAfterTheBulkCopy(t *testing.T) {
	dir := testtemp.Dir(t)
	unique := func(_ string, _ uint16, p []byte) []string { return []string{"u:" + string(p)} }
	s := openC(t, dir, Options{NoSync: true, Indexer: unique, IndexVersion: 9})
	fillN(t, s, 1, 3000)
	waitIndexedTo(t, s, 3000)
	var once atomic.Bool
	Failpoint = func(name string) {
		if name == "journal/compact-copied" && once.CompareAndSwap(false, true) {
			fillN(t, s, 3001, 100)
			waitIndexedTo(t, s, 3100)
		}
	}
	defer func() { Failpoint = nil }()
	if _, err := s.Compact(2000, fakeState(2000)); err != nil {
		t.Fatal(err)
	}
	Failpoint = nil
	if !once.Load() {
		t.Fatal("the failpoint after the bulk copy was not hit")
	}
	var terms []string
	if err := s.Terms("u:", func(term string) error { terms = append(terms, term); return nil }); err != nil {
		t.Fatal(err)
	}
	has := map[string]bool{}
	for _, x := range terms {
		has[x] = true
	}
	for i := 2001; i <= 3100; i++ {
		term := fmt.Sprintf(`u:{"n":%d}`, i)
		if !has[term] {
			t.Fatalf("term of event %d missing after the compaction (%d terms)", i, len(terms))
		}
		var got []uint64
		if err := s.Postings(term, 0, 0, false, func(seq uint64) error { got = append(got, seq); return nil }); err != nil || len(got) != 1 || got[0] != uint64(i) {
			t.Fatalf("postings of %s: %v %v", term, got, err)
		}
	}
}
