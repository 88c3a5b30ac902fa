package daemon

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zlayer/overlayd/cmd/internal/journalgen"
	"github.com/zlayer/overlayd/cmd/internal/replay"
	"github.com/zlayer/overlayd/effects"
	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/journal"
	"github.com/zlayer/overlayd/tools/testseed"
)

func u64p(v uint64) *uint64 { return &v }

// stateOf is the daemon's state through state_dump.
func stateOf(t *testing.T, c *ipc.Client) (uint64, []byte) {
	t.Helper()
	r := call(t, c, ipc.StateDump{})
	sr, ok := r.(*ipc.StateResult)
	if !ok {
		if v, ok2 := r.(ipc.StateResult); ok2 {
			sr = &v
		} else {
			t.Fatalf("state_dump answered %T", r)
		}
	}
	if sr.Offset+uint64(len(sr.Part)) != sr.Total {
		t.Fatalf("state of %d bytes in parts", sr.Total)
	}
	return sr.Seq, []byte(sr.Part)
}

// TestJournalCompactOnline: journal_compact while 8 clients write: every
// acknowledged write is in the compacted journal, the daemon serves on,
// its state equals a replay of the journal from the checkpoint, a second
// daemon boots on it (its snapshot older than the checkpoint) with the
// same state, and the archive verifies with the checkpoint.
func TestJournalCompactOnline(t *testing.T) {
	data := t.TempDir()
	d, err := Open(Config{DataDir: data, Log: slog.New(slog.DiscardHandler), NoDataPlane: true, SnapshotEvery: 100})
	if err != nil {
		t.Fatal(err)
	}
	c := serveTest(t, d, data)
	dir := filepath.Join(data, "overlayd")
	for i := 0; i < 300; i++ {
		if e := register(t, c, fmt.Sprintf("a%d.p.local", i)); e != "" {
			t.Fatal(e)
		}
		if i == 150 {
			waitUntil(t, "a snapshot", func() bool { _, err := os.Stat(filepath.Join(dir, journal.SnapshotFileName)); return err == nil })
			copyFile(t, filepath.Join(dir, journal.SnapshotFileName), filepath.Join(data, "old-snapshot"))
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var acked []string
	stop := make(chan struct{})
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("w%d-%d.p.local", w, i)
				if e := register(t, c, name); e != "" {
					t.Error(e)
					return
				}
				mu.Lock()
				acked = append(acked, name)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	r := call(t, c, ipc.JournalCompact{BeforeSeq: u64p(201)})
	close(stop)
	wg.Wait()
	res, ok := r.(ipc.JournalCompacted)
	if !ok {
		t.Fatalf("journal_compact answered %#v", r)
	}
	if res.CheckpointSeq != 200 || res.Events != 200 || res.FirstSeq != 1 || !strings.HasSuffix(res.Archive, journal.ArchiveExt) {
		t.Fatalf("journal_compact: %+v", res)
	}
	t.Logf("compacted online: %+v; %d writes acknowledged around it", res, len(acked))
	// A second compaction at the same point has nothing to do.
	if _, err := c.Call(context.Background(), ipc.JournalCompact{BeforeSeq: u64p(150)}); err == nil || !strings.Contains(err.Error(), "no event to compact") {
		t.Fatalf("compacting before the checkpoint: %v", err)
	}
	// Following from before the checkpoint would skip archived events.
	if _, err := c.Call(context.Background(), ipc.JournalFollow{AfterSeq: 10}); err == nil || !strings.Contains(err.Error(), "compacted into archive") {
		t.Fatalf("journal_follow from before the checkpoint: %v", err)
	}
	seq, live := stateOf(t, c)
	for _, name := range acked {
		if !bytes.Contains(live, []byte(`"`+name+`"`)) {
			t.Fatalf("acknowledged %s is not in the state", name)
		}
	}
	// The daemon's journal_verify passes from the checkpoint.
	vr := call(t, c, ipc.JournalVerify{})
	if rep, ok := vr.(ipc.JournalReport); !ok || !rep.OK {
		t.Fatalf("journal_verify: %#v", vr)
	}
	d.Stop()
	<-d.Done()

	// The journal as it is on disk: from the checkpoint, and the archive.
	s, err := journal.Open(dir, journal.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if ck := journal.CheckpointOf(s); ck == nil || ck.Seq != 200 {
		t.Fatalf("checkpoint %+v", ck)
	}
	if a := replay.VerifyArchives(s, replay.DefaultArchiveDir(dir)); !a.OK() {
		t.Fatalf("archives: %v", a.Problems)
	}
	st, _, err := replay.Load(s, replay.Options{NoSnapshot: true, UpTo: seq})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := st.CanonicalJSON()
	s.Close()
	if !bytes.Equal(want, live) {
		t.Fatal("the daemon's state differs from a replay of the compacted journal")
	}

	// A snapshot older than the checkpoint: boot starts from the
	// checkpoint and ends with the same state.
	copyFile(t, filepath.Join(data, "old-snapshot"), filepath.Join(dir, journal.SnapshotFileName))
	if sn, err := journal.ReadSnapshotFile(dir); err != nil || sn.Seq >= 200 {
		t.Fatalf("the old snapshot: %+v %v", sn, err)
	}
	d2, err := Open(Config{DataDir: data, Log: slog.New(slog.DiscardHandler), NoDataPlane: true})
	if err != nil {
		t.Fatalf("boot on the compacted journal: %v", err)
	}
	if b := d2.BootStats(); b.CheckpointSeq != 200 || b.SnapshotSeq != 0 || !strings.Contains(b.SnapshotReason, "older than the checkpoint") {
		t.Fatalf("boot stats %+v", b)
	}
	c2 := serveTest(t, d2, t.TempDir())
	_, again := stateOf(t, c2)
	if !bytes.Contains(again, []byte(`"`+acked[len(acked)-1]+`"`)) {
		t.Fatal("the last acknowledged write is lost after the restart")
	}
}

// TestJournalCompactFailureKeepsServing: a compaction that fails (the
// disk full) is answered err, changes nothing and the daemon goes on
// taking writes.
func TestJournalCompactFailureKeepsServing(t *testing.T) {
	data := t.TempDir()
	bs, err := journal.Open(filepath.Join(data, "overlayd"), journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	store := journal.NewFaulty(bs)
	obs := &names{set: map[string]bool{}}
	d, err := Open(Config{DataDir: data, Log: slog.New(slog.DiscardHandler), NoDataPlane: true, Store: store, Reconcilers: []effects.Reconciler{obs}})
	if err != nil {
		t.Fatal(err)
	}
	c := serveTest(t, d, data)
	for i := 0; i < 50; i++ {
		if e := register(t, c, fmt.Sprintf("a%d.p.local", i)); e != "" {
			t.Fatal(e)
		}
	}
	store.FailNext(1, errNoSpace)
	_, err = c.Call(context.Background(), ipc.JournalCompact{BeforeSeq: u64p(20)})
	if e := refusalOf(t, err); !strings.Contains(e, "no space left") || !strings.Contains(e, "unchanged") {
		t.Fatalf("a failed compaction answered %q", e)
	}
	if journal.CheckpointOf(store) != nil {
		t.Fatal("a failed compaction left a checkpoint")
	}
	if e := register(t, c, "after.p.local"); e != "" {
		t.Fatalf("a write after the failed compaction: %s", e)
	}
	r := call(t, c, ipc.JournalCompact{BeforeSeq: u64p(20)})
	if res, ok := r.(ipc.JournalCompacted); !ok || res.CheckpointSeq != 19 {
		t.Fatalf("the compaction after: %#v", r)
	}
	if e := register(t, c, "after2.p.local"); e != "" {
		t.Fatalf("a write after the compaction: %s", e)
	}
}

// TestRetainEvents: with RetainEvents the daemon compacts by itself at
// snapshot time and keeps at least the newest RetainEvents events.
func TestRetainEvents(t *testing.T) {
	data := t.TempDir()
	d, err := Open(Config{DataDir: data, Log: slog.New(slog.DiscardHandler), NoDataPlane: true, SnapshotEvery: 50, RetainEvents: 100})
	if err != nil {
		t.Fatal(err)
	}
	c := serveTest(t, d, data)
	for i := 0; i < 400; i++ {
		if e := register(t, c, fmt.Sprintf("a%d.p.local", i)); e != "" {
			t.Fatal(e)
		}
	}
	waitUntil(t, "an automatic compaction", func() bool {
		ck := journal.CheckpointOf(d.store)
		return ck != nil && ck.Seq >= 200
	})
	ck := journal.CheckpointOf(d.store)
	head, _ := d.store.Head()
	if head-ck.Seq < 100 {
		t.Fatalf("checkpoint at %d, head %d: fewer than 100 events kept", ck.Seq, head)
	}
	if rep, err := d.store.Verify(); err != nil || !rep.OK() {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

// TestBoot1MCompacted measures the daemon's boot (Open, no data plane) on
// a 1M-event journal before and after a compaction at 900,000, with the
// snapshot and without it, for BENCHMARKS.md. It takes minutes: it runs
// with OVERLAYD_COMPACT_1M=1.
func TestBoot1MCompacted(t *testing.T) {
	if os.Getenv("OVERLAYD_COMPACT_1M") == "" {
		t.Skip("a 1M-event journal takes minutes to generate: set OVERLAYD_COMPACT_1M=1 to run it")
	}
	data := t.TempDir()
	dir := filepath.Join(data, "overlayd")
	store, err := journal.Open(dir, replay.Indexing(journal.Options{NoSync: true}))
	if err != nil {
		t.Fatal(err)
	}
	g := journalgen.New(store, rand.New(rand.NewSource(testseed.Or(t, 1_000_000))))
	if err := g.Until(1_000_000); err != nil {
		t.Fatal(err)
	}
	_, hash := store.Head()
	if err := store.SaveSnapshot(replay.Snapshot(g.State, hash)); err != nil {
		t.Fatal(err)
	}
	store.Close()
	boot := func(what string) {
		t.Helper()
		start := time.Now()
		d, err := Open(Config{DataDir: data, Log: slog.New(slog.DiscardHandler), NoDataPlane: true})
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		b := d.BootStats()
		d.Stop()
		<-d.Done()
		fi, _ := os.Stat(filepath.Join(dir, journal.FileName))
		t.Logf("boot %s: %v (snapshot %d, checkpoint %d, replayed %d); journal %.1f MiB", what, took.Round(time.Millisecond), b.SnapshotSeq, b.CheckpointSeq, b.Replayed, float64(fi.Size())/(1<<20))
	}
	noSnap := func() { os.Remove(filepath.Join(dir, journal.SnapshotFileName)) }
	boot("before compaction, with the snapshot")
	noSnap()
	boot("before compaction, without a snapshot (full replay)")
	res, err := replay.CompactDir(dir, replay.CompactOptions{BeforeSeq: 900_001})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("compaction at %d: %v (commits held %v), %d -> %d bytes", res.Checkpoint.Seq, res.Took.Round(time.Millisecond), res.Held.Round(time.Millisecond), res.BytesBefore, res.BytesAfter)
	boot("after compaction, with the snapshot")
	noSnap()
	boot("after compaction, without a snapshot (from the checkpoint)")
}
