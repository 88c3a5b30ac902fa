package replay

import (
	"bytes"
	"errors"
	"github.com/zlayer/overlayd/tools/testtemp"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zlayer/overlayd/journal"
	"github.com/zlayer/overlayd/tools/testseed"
)

func loadJSON(t testing.TB, store journal.Store, opt Options) ([]byte, Stats) {
	t.Helper()
	s, st, err := Load(store, opt)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.CanonicalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b, st
}

// TestCompactSmall is the always-run version of the 1M-event check: a
// generated journal of 20k events compacted at 15,000 (offline, as
// `overlayctl journal compact --before 15001` does) loads into the same
// state as before (canonical JSON), with the snapshot, without it and from
// the checkpoint alone; verify passes from the checkpoint and, with the
// archive, from event 1 (the archive's replay equals the checkpoint's
// state); a changed byte in the archive, and in the checkpoint, is named.
func TestCompactSmall(t *testing.T) {
	r := rand.New(rand.NewSource(testseed.Or(t, 20)))
	data := testtemp.Dir(t)
	dir := filepath.Join(data, "overlayd")
	genJournalKeep(t, data, 20000, r, false)
	checkCompaction(t, dir, 15000)
}

// TestCompact1M is the check on a 1M-event journal compacted at
// 900,000, with the measurements the lead puts in BENCHMARKS.md. It takes
// minutes: it runs with OVERLAYD_COMPACT_1M=1.
func TestCompact1M(t *testing.T) {
	if os.Getenv("OVERLAYD_COMPACT_1M") == "" {
		t.Skip("a 1M-event journal takes minutes to generate: set OVERLAYD_COMPACT_1M=1 to run it")
	}
	r := rand.New(rand.NewSource(testseed.Or(t, 1_000_000)))
	data := testtemp.Dir(t)
	if d := os.Getenv("OVERLAYD_COMPACT_DIR"); d != "" {
		data = d // keep the journal (to measure the daemon's boot on it)
	}
	dir := filepath.Join(data, "overlayd")
	start := time.Now()
	genJournalKeep(t, data, 1_000_000, r, false)
	t.Logf("generated 1M events in %v", time.Since(start).Round(time.Millisecond))
	checkCompaction(t, dir, 900_000)
}

// boot measures what the daemon's boot does with the journal: open it,
// then Load (verifying), with the snapshot and without.
func boot(t testing.TB, dir string) (withSnap, without time.Duration, state []byte) {
	t.Helper()
	start := time.Now()
	s, err := journal.Open(dir, journal.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	state, _ = loadJSON(t, s, Options{Verify: true})
	withSnap = time.Since(start)
	start = time.Now()
	full, _ := loadJSON(t, s, Options{Verify: true, NoSnapshot: true})
	without = time.Since(start)
	if !bytes.Equal(full, state) {
		t.Fatal("the state with the snapshot differs from the one without")
	}
	return withSnap, without, state
}

func checkCompaction(t *testing.T, dir string, at uint64) {
	jpath := filepath.Join(dir, journal.FileName)
	fi, _ := os.Stat(jpath)
	sizeBefore := fi.Size()
	bootSnap, bootFull, before := boot(t, dir)

	res, err := CompactDir(dir, CompactOptions{BeforeSeq: at + 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Checkpoint.Seq != at || res.Events != at {
		t.Fatalf("checkpoint at %d, %d events archived; want %d", res.Checkpoint.Seq, res.Events, at)
	}
	fi, _ = os.Stat(jpath)
	sizeAfter := fi.Size()
	bootSnap2, bootFull2, after := boot(t, dir)
	if !bytes.Equal(before, after) {
		t.Fatalf("the state after compaction differs from the state before")
	}
	t.Logf("compaction at %d: took %v (commits held %v); journal %d -> %d bytes (%.1f -> %.1f MiB); archive %d bytes",
		at, res.Took.Round(time.Millisecond), res.Held.Round(time.Millisecond), sizeBefore, sizeAfter,
		float64(sizeBefore)/(1<<20), float64(sizeAfter)/(1<<20), res.ArchiveBytes)
	t.Logf("boot (open + Load, verifying): with the snapshot %v -> %v; without it (full replay -> from the checkpoint) %v -> %v",
		bootSnap.Round(time.Millisecond), bootSnap2.Round(time.Millisecond), bootFull.Round(time.Millisecond), bootFull2.Round(time.Millisecond))
	if sizeAfter >= sizeBefore {
		t.Fatalf("the journal did not shrink: %d -> %d bytes", sizeBefore, sizeAfter)
	}

	// Without the snapshot file, the boot starts from the checkpoint.
	os.Remove(filepath.Join(dir, journal.SnapshotFileName))
	s, err := journal.Open(dir, Indexing(journal.Options{ReadOnly: true}))
	if err != nil {
		t.Fatal(err)
	}
	got, st := loadJSON(t, s, Options{Verify: true})
	if !bytes.Equal(got, before) || st.SnapshotSeq != 0 || st.CheckpointSeq != at || st.Replayed != head(s)-at {
		t.Fatalf("load from the checkpoint: stats %+v, state equal %v", st, bytes.Equal(got, before))
	}
	if ix := s.IndexStatus(); !ix.Ready {
		t.Fatalf("the index after compaction: %+v", ix)
	}
	n := 0
	if err := s.Terms("", func(string) error { n++; return nil }); err != nil || n == 0 {
		t.Fatalf("index terms after compaction: %d, %v", n, err)
	}
	if _, _, err := Load(s, Options{UpTo: at - 1}); !errors.Is(err, journal.ErrCompacted) {
		t.Fatalf("a state before the checkpoint: %v", err)
	}

	// Verify: from the checkpoint, then with the archive from event 1.
	start := time.Now()
	rep, err := Verify(s, nil, 0)
	if err != nil || !rep.OK() || rep.CheckpointSeq != at || rep.Chain.FirstSeq != at+1 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	tookChain := time.Since(start)
	adir := DefaultArchiveDir(dir)
	a := VerifyArchives(s, adir)
	if !a.OK() || a.Events != at || !strings.Contains(a.State, "equals the checkpoint's state") {
		t.Fatalf("archives: %+v", a)
	}
	t.Logf("verify from the checkpoint (%d events): %v; archives (%d events, chain and replay): %v (%.0f events/s)",
		rep.Chain.Events, tookChain.Round(time.Millisecond), a.Events, a.Took.Round(time.Millisecond), float64(a.Events)/a.Took.Seconds())
	ck := journal.CheckpointOf(s)
	s.Close()

	// A changed byte in the archive is named: the archive and the event.
	apath := filepath.Join(adir, ck.Archive().Name)
	orig, err := os.ReadFile(apath)
	if err != nil {
		t.Fatal(err)
	}
	target := uint64(523)
	off := recordOffset(orig, target) + 70
	b := append([]byte(nil), orig...)
	b[off] ^= 0x01
	if err := os.WriteFile(apath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = journal.Open(dir, journal.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	a = VerifyArchives(s, adir)
	s.Close()
	if a.OK() || !strings.Contains(a.Problems[0], "archive "+ck.Archive().Name+": event 523: ") {
		t.Fatalf("a changed byte in event 523 of the archive: %+v", a.Problems)
	}
	t.Logf("tampered archive: %s", a.Problems[0])
	if err := os.WriteFile(apath, orig, 0o600); err != nil {
		t.Fatal(err)
	}

	// A changed byte in the checkpoint's state is named.
	if err := journal.RawUpdateMeta(jpath, "checkpoint", func(v []byte) []byte {
		v[len(v)-100] ^= 0x01
		return v
	}); err != nil {
		t.Fatal(err)
	}
	s, err = journal.Open(dir, journal.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rep, err = Verify(s, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := "checkpoint at " + strconv.FormatUint(at, 10) + ": state does not match its hash"
	if rep.OK() || !strings.Contains(rep.Problems[0], want) {
		t.Fatalf("a changed byte in the checkpoint: %v", rep.Problems)
	}
	t.Logf("tampered checkpoint: %s", rep.Problems[0])
	if _, _, err := Load(s, Options{}); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("a load from a tampered checkpoint: %v", err)
	}
}

func head(s journal.Store) uint64 { h, _ := s.Head(); return h }

// recordOffset is the offset of event seq's envelope in an archive's
// bytes (doc.go of journal: the header, then u32 length + envelope each).
func recordOffset(b []byte, seq uint64) int {
	off := 4 + 1 + 16 + 8 + 8 + 32 + 8
	for s := uint64(1); s < seq; s++ {
		n := int(b[off])<<24 | int(b[off+1])<<16 | int(b[off+2])<<8 | int(b[off+3])
		off += 4 + n
	}
	return off + 4
}

// TestCompactRefusedWhileLocked: an offline compaction refuses a journal a
// daemon holds, and changes nothing.
func TestCompactRefusedWhileLocked(t *testing.T) {
	data := testtemp.Dir(t)
	genJournalKeep(t, data, 500, rand.New(rand.NewSource(testseed.Or(t, 3))), false)
	dir := filepath.Join(data, "overlayd")
	s, err := journal.Open(dir, Indexing(journal.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := CompactDir(dir, CompactOptions{BeforeSeq: 100}); !errors.Is(err, journal.ErrLocked) {
		t.Fatalf("offline compaction of a held journal: %v", err)
	}
	if journal.CheckpointOf(s) != nil {
		t.Fatal("a checkpoint appeared")
	}
	// Through the holder (as the daemon does), it works, and a time point
	// resolves to the last event before it.
	var mid journal.Envelope
	if err := s.Iterate(249, false, func(e *journal.Envelope) error { mid = *e; return errors.New("stop") }); err == nil {
		t.Fatal("no event 250")
	}
	n, err := CompactPoint(s, CompactOptions{BeforeTime: mid.Time})
	if err != nil || n >= 250 || n < 240 {
		t.Fatalf("the point before the time of event 250: %d, %v", n, err)
	}
	res, err := Compact(s, CompactOptions{BeforeTime: mid.Time})
	if err != nil || res.Checkpoint.Seq != n {
		t.Fatalf("compact: %+v %v", res, err)
	}
	if _, err := CompactPoint(s, CompactOptions{BeforeSeq: n}); !errors.Is(err, ErrNothingToCompact) {
		t.Fatalf("compacting before the checkpoint again: %v", err)
	}
}

// TestRepairRefusesACompactedJournal: repair, which salvages from event 1,
// refuses a compacted journal and leaves it (and its directory) as it was.
func TestRepairRefusesACompactedJournal(t *testing.T) {
	data := testtemp.Dir(t)
	genJournalKeep(t, data, 500, rand.New(rand.NewSource(testseed.Or(t, 5))), false)
	dir := filepath.Join(data, "overlayd")
	if _, err := CompactDir(dir, CompactOptions{BeforeSeq: 301}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, journal.FileName))
	ents, _ := os.ReadDir(dir)
	_, err := Repair(dir, RepairOptions{Force: true})
	if !errors.Is(err, ErrCompactedRepair) || !strings.Contains(err.Error(), "checkpoint at 300") {
		t.Fatalf("repair of a compacted journal: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, journal.FileName))
	ents2, _ := os.ReadDir(dir)
	if !bytes.Equal(before, after) || len(ents) != len(ents2) {
		t.Fatalf("repair changed the directory: %d -> %d entries", len(ents), len(ents2))
	}
}
