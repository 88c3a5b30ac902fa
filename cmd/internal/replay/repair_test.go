package replay

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"github.com/zlayer/overlayd/tools/testtemp"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zlayer/overlayd/tools/testseed"

	"github.com/zlayer/overlayd/journal"
	"github.com/zlayer/overlayd/journal/journaltest"
	"github.com/zlayer/overlayd/projections"
)

// namesDamage: err names the file, the page or the event at fault.
func namesDamage(err error, path string) bool {
	msg := err.Error()
	return (strings.Contains(msg, path) || strings.Contains(msg, "event ")) &&
		(journal.IsDamage(err) || errors.Is(err, journal.ErrHashMismatch) || errors.Is(err, journal.ErrMalformed) ||
			errors.Is(err, journal.ErrNotFound) || strings.Contains(msg, "event "))
}

// A journal of a few thousand events with a snapshot at its head, damaged
// 40 ways (20 truncation points, 20 flipped bytes spread across the file):
// Open, Iterate, Verify, Check and replay never panic, and each either
// works (every event as written, the state as it was) or fails with an
// error naming the damage. Repair then gives a journal that opens,
// verifies and replays to the state the node had (the snapshot covers the
// loss), holding the original events 1..N byte for byte, and a report
// whose lost range is exactly N+1..head.
func TestDamagedJournalsAreReadSafelyAndRepaired(t *testing.T) {
	r := rand.New(rand.NewSource(testseed.Or(t, 11)))
	pristine := testtemp.Dir(t)
	h := genJournal(t, pristine, 4000, r)
	jdir := filepath.Join(pristine, "overlayd")
	raw, err := os.ReadFile(filepath.Join(jdir, journal.FileName))
	if err != nil {
		t.Fatal(err)
	}
	total := uint64(len(h.envs))
	t.Logf("%d events, %d bytes, sha256 %x", total, len(raw), sha256.Sum256(raw))
	outcomes := map[string]int{}
	for _, d := range journaltest.Damages(len(raw), r) {
		t.Run(d.Name, func(t *testing.T) {
			dir := journaltest.CopyDir(t, jdir)
			path := filepath.Join(dir, journal.FileName)
			if err := os.WriteFile(path, d.Apply(raw), 0o600); err != nil {
				t.Fatal(err)
			}
			outcomes[readDamaged(t, dir, h)]++

			rep, err := Repair(dir, RepairOptions{})
			if err != nil {
				t.Fatalf("repair: %v", err)
			}
			st, err := journal.Open(dir, journal.Options{ReadOnly: true})
			if err != nil {
				t.Fatalf("the repaired journal does not open: %v", err)
			}
			defer st.Close()
			if v, err := Verify(st, nil, 0); err != nil || !v.OK() {
				t.Fatalf("the repaired journal does not verify: %v %+v", err, v)
			}
			for _, opt := range []Options{{Verify: true}, {NoSnapshot: true, Verify: true}} {
				s, _, err := Load(st, opt)
				if err != nil {
					t.Fatalf("replay %+v: %v", opt, err)
				}
				if got := canonical(t, s); !bytes.Equal(got, h.state) {
					t.Fatalf("replay %+v of the repaired journal is not the node's state", opt)
				}
			}
			// Events 1..N are the originals, byte for byte.
			n := rep.Salvaged
			i := uint64(0)
			if err := st.Iterate(0, true, func(e *journal.Envelope) error {
				i++
				if i <= n && !bytes.Equal(e.Encode(), h.envs[i-1]) {
					return fmt.Errorf("event %d differs from the original", i)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if !rep.Changed {
				if n != total || rep.Lost != nil {
					t.Fatalf("nothing repaired, but %d of %d events kept", n, total)
				}
				t.Logf("nothing to repair")
				return
			}
			if i != n+1 || rep.RepairedSeq != n+1 {
				t.Fatalf("the repaired journal holds %d events, want the %d salvaged and journal_repaired", i, n)
			}
			// The lost range is exact: the snapshot was at the head.
			if n == total {
				if rep.Lost != nil {
					t.Fatalf("every event kept, but the report says %d..%d lost", rep.Lost.From, rep.Lost.To)
				}
			} else {
				l := rep.Lost
				if l == nil || l.From != n+1 || l.To != total || !l.CoveredBySnapshot || l.CoveredTo != total {
					t.Fatalf("lost %+v, want %d..%d covered by the snapshot", l, n+1, total)
				}
				want := map[string]int{}
				for _, typ := range h.types[n:] {
					want[typ]++
				}
				readable := uint64(0)
				for typ, c := range l.Types {
					if c > want[typ] {
						t.Fatalf("%d lost %s events reported, %d were lost", c, typ, want[typ])
					}
					readable += uint64(c)
				}
				if readable+l.Unreadable != l.Count() {
					t.Fatalf("%d readable + %d unreadable lost events, %d lost", readable, l.Unreadable, l.Count())
				}
				if rep.Snapshot.Status != "covers" || rep.Snapshot.Action != "rewritten" {
					t.Fatalf("snapshot %+v", rep.Snapshot)
				}
			}
			b, err := os.ReadFile(rep.BrokenCopy)
			if err != nil {
				t.Fatalf("no broken copy: %v", err)
			}
			if !bytes.Equal(b, d.Apply(raw)) {
				t.Fatal("the broken copy is not the damaged file")
			}
			t.Logf("kept %d of %d events (%d through bbolt), lost %v", n, total, rep.ReadThroughBbolt, rep.Lost)
		})
	}
	t.Logf("outcomes: %v", outcomes)
}

// readDamaged reads the damaged journal in dir every way and returns what
// happened.
func readDamaged(t *testing.T, dir string, h history) string {
	t.Helper()
	path := filepath.Join(dir, journal.FileName)
	st, err := journal.Open(dir, journal.Options{ReadOnly: true})
	if err != nil {
		if !namesDamage(err, path) {
			t.Fatalf("open: the error does not name the damage: %v", err)
		}
		return "refused at open"
	}
	defer st.Close()
	var failed []string
	// The callback returns what it finds (Iterate returns it as it is): a
	// t.Fatal inside it would leave the read transaction open, and the
	// deferred Close would wait for it for ever.
	var changed error
	if err := st.Iterate(0, true, func(e *journal.Envelope) error {
		if int(e.Seq) > len(h.envs) || !bytes.Equal(e.Encode(), h.envs[e.Seq-1]) {
			changed = fmt.Errorf("iterate returned event %d, changed, as verified", e.Seq)
			return changed
		}
		return nil
	}); err != nil {
		if changed != nil {
			t.Fatal(changed)
		}
		if !namesDamage(err, path) {
			t.Fatalf("iterate: %v", err)
		}
		failed = append(failed, "iterate")
	}
	if rep, err := st.Verify(); err != nil {
		t.Fatalf("verify: %v", err)
	} else if !rep.OK() {
		failed = append(failed, "verify")
	}
	if err := st.Check(); err != nil {
		if !journal.IsDamage(err) || !strings.Contains(err.Error(), path) {
			t.Fatalf("check: %v", err)
		}
		failed = append(failed, "check")
	}
	for _, opt := range []Options{{Verify: true}, {NoSnapshot: true, Verify: true}} {
		s, _, err := Load(st, opt)
		switch {
		case err != nil:
			if !namesDamage(err, path) {
				t.Fatalf("replay %+v: %v", opt, err)
			}
			failed = append(failed, "replay")
		case !bytes.Equal(canonical(t, s), h.state) && len(failed) == 0:
			t.Fatalf("replay %+v worked into another state, and nothing named the damage", opt)
		}
	}
	if len(failed) == 0 {
		if head, _ := st.Head(); head != uint64(len(h.envs)) {
			t.Fatalf("everything worked on %d of %d events", head, len(h.envs))
		}
		return "works"
	}
	return "opens; fail naming the damage: " + strings.Join(failed, ", ")
}

// The first case: journal.db emptied (0 bytes) beside a snapshot.
// Repair gives a journal of one journal_repaired event that carries the
// snapshot's state, with the snapshot's journal id, and reports events
// 1..snapshot as lost but covered.
func TestRepairEmptyJournalBesideASnapshot(t *testing.T) {
	data := testtemp.Dir(t)
	h := genJournal(t, data, 500, rand.New(rand.NewSource(3)))
	dir := filepath.Join(data, "overlayd")
	sn, err := journal.ReadSnapshotFile(dir)
	if err != nil || sn == nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(dir, journal.FileName), 0); err != nil {
		t.Fatal(err)
	}
	rep, err := Repair(dir, RepairOptions{Now: func() time.Time { return time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Salvaged != 0 || rep.RepairedSeq != 1 || rep.Journal != sn.Journal.String() || rep.JournalFrom != "snapshot" {
		t.Fatalf("report %+v", rep)
	}
	if l := rep.Lost; l == nil || l.From != 1 || l.To != uint64(len(h.envs)) || !l.CoveredBySnapshot || l.Unreadable != l.Count() {
		t.Fatalf("lost %+v", rep.Lost)
	}
	if filepath.Base(rep.BrokenCopy) != "journal.db.broken-20261201T100000Z" {
		t.Fatalf("broken copy %s", rep.BrokenCopy)
	}
	st, err := journal.Open(dir, journal.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if st.Identity().ID != sn.Journal {
		t.Fatalf("id %s, want the snapshot's %s", st.Identity().ID, sn.Journal)
	}
	s, stats, err := Load(st, Options{NoSnapshot: true, Verify: true})
	if err != nil || !bytes.Equal(canonical(t, s), h.state) || s.Seq != 1 {
		t.Fatalf("replay of the repaired journal alone: %v %+v", err, stats)
	}
	var ev *projections.JournalRepaired
	if err := st.Iterate(0, true, func(e *journal.Envelope) error {
		d, err := projections.DecodeEvent(e.Type, e.Version, e.Payload)
		if err != nil {
			return err
		}
		ev, _ = d.(*projections.JournalRepaired)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if ev == nil || ev.LostFrom != 1 || ev.SnapshotSeq != uint64(len(h.envs)) || len(ev.State) == 0 || ev.BrokenCopy != filepath.Base(rep.BrokenCopy) {
		t.Fatalf("journal_repaired event: %+v", ev)
	}
	sn2, err := st.LoadSnapshot()
	if err != nil || sn2 == nil {
		t.Fatalf("snapshot after repair: %v %v", sn2, err)
	}
	if sn2.Seq != 1 || sn2.Journal != sn.Journal {
		t.Fatalf("snapshot after repair: seq %d journal %s", sn2.Seq, sn2.Journal)
	}
}

// Without a snapshot newer than the last good event, the repaired journal
// ends at that event followed by a journal_repaired event without state;
// the loss is reported, not covered.
func TestRepairWithoutCoveringSnapshot(t *testing.T) {
	data := testtemp.Dir(t)
	h := genJournal(t, data, 800, rand.New(rand.NewSource(4)))
	dir := filepath.Join(data, "overlayd")
	if err := os.Remove(filepath.Join(dir, journal.SnapshotFileName)); err != nil {
		t.Fatal(err)
	}
	// Change one byte of event 600, in every copy the file holds (old
	// versions of its page too): the chain breaks there.
	path := filepath.Join(dir, journal.FileName)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	copies := 0
	for off := 0; ; {
		i := bytes.Index(b[off:], h.envs[599])
		if i < 0 {
			break
		}
		b[off+i+len(h.envs[599])-70] ^= 1
		off += i + 1
		copies++
	}
	if copies == 0 {
		t.Fatal("event 600 not found in the file")
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := Repair(dir, RepairOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l := rep.Lost
	if rep.Salvaged != 599 || l == nil || l.From != 600 || l.To != uint64(len(h.envs)) || l.CoveredBySnapshot || l.Unreadable != 1 {
		t.Fatalf("report %+v, lost %+v", rep, l)
	}
	if rep.Snapshot.Status != "none" {
		t.Fatalf("snapshot %+v", rep.Snapshot)
	}
	want := map[string]int{} // event 600 is damaged: its type is not counted
	for _, typ := range h.types[600:] {
		want[typ]++
	}
	if fmt.Sprint(l.Types) != fmt.Sprint(want) {
		t.Fatalf("lost types %v, want %v", l.Types, want)
	}
	st, err := journal.Open(dir, journal.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if head, _ := st.Head(); head != 600 {
		t.Fatalf("head %d", head)
	}
	s, _, err := Load(st, Options{Verify: true})
	if err != nil || s.Seq != 600 {
		t.Fatalf("replay: %v", err)
	}
	// The state is the one after event 599.
	mem := journal.NewMem()
	if err := st.Iterate(0, false, func(e *journal.Envelope) error {
		if e.Seq < 600 {
			_, err := mem.Append([]journal.Record{{Type: e.Type, Version: e.Version, Payload: append([]byte(nil), e.Payload...)}}).Wait()
			return err
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if head, _ := mem.Head(); head != 599 {
		t.Fatalf("copied %d events, want 599", head)
	}
	ref, _, err := Load(mem, Options{})
	if err != nil || !bytes.Equal(canonical(t, ref), canonical(t, s)) {
		t.Fatalf("state after repair is not the state after event 599: %v", err)
	}
}

// A healthy journal is left alone; a daemon holding the journal makes
// Repair refuse.
func TestRepairLeavesAHealthyJournalAndRefusesWhileHeld(t *testing.T) {
	data := testtemp.Dir(t)
	genJournal(t, data, 100, rand.New(rand.NewSource(5)))
	dir := filepath.Join(data, "overlayd")
	before, err := os.ReadFile(filepath.Join(dir, journal.FileName))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Repair(dir, RepairOptions{})
	if err != nil || rep.Changed || rep.BrokenCopy != "" {
		t.Fatalf("healthy journal: %+v %v", rep, err)
	}
	after, err := os.ReadFile(filepath.Join(dir, journal.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("repair changed a healthy journal")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "journal.db.broken-*")); len(left) != 0 {
		t.Fatalf("copies left: %v", left)
	}
	st, err := journal.Open(dir, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := Repair(dir, RepairOptions{}); !errors.Is(err, journal.ErrLocked) {
		t.Fatalf("repair while the journal is held: %v", err)
	}
}

// A snapshot of another journal is not used by Load, and is named.
func TestForeignSnapshotIsNotUsed(t *testing.T) {
	st := journal.NewMem()
	appendEvents(t, st, &projections.NodeIDSet{NodeID: 3})
	s, _, err := Load(st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := st.HashAt(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SaveSnapshot(Snapshot(s, h)); err != nil {
		t.Fatal(err)
	}
	other := journal.NewMem()
	appendEvents(t, other, &projections.NodeIDSet{NodeID: 3})
	sn, err := st.LoadSnapshot()
	if err != nil || sn == nil {
		t.Fatalf("snapshot: %v %v", sn, err)
	}
	// Give other st's snapshot, under st's id.
	fs := &foreignSnap{Store: other, sn: sn}
	_, stats, err := Load(fs, Options{})
	if err != nil || stats.SnapshotSeq != 0 || !strings.Contains(stats.SnapshotReason, "belongs to journal") {
		t.Fatalf("foreign snapshot: %v %+v", err, stats)
	}
}

type foreignSnap struct {
	journal.Store
	sn *journal.Snapshot
}

func (f *foreignSnap) LoadSnapshot() (*journal.Snapshot, error) { return f.sn, nil }

// An event changed in bbolt's tree, with an intact copy left in an older
// page: repair restores the original and loses nothing.
func TestRepairRestoresAnEventFromAnOlderPage(t *testing.T) {
	data := testtemp.Dir(t)
	h := genJournal(t, data, 300, rand.New(rand.NewSource(6)))
	dir := filepath.Join(data, "overlayd")
	if err := journal.RawUpdate(filepath.Join(dir, journal.FileName), func(seq uint64, raw []byte) []byte {
		if seq != 200 {
			return nil
		}
		b := append([]byte(nil), raw...)
		b[len(b)-70] ^= 1
		return b
	}); err != nil {
		t.Fatal(err)
	}
	rep, err := Repair(dir, RepairOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Changed || rep.Lost != nil || rep.Salvaged != uint64(len(h.envs)) {
		t.Fatalf("report %+v", rep)
	}
	st, err := journal.Open(dir, journal.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if v, err := Verify(st, nil, 0); err != nil || !v.OK() {
		t.Fatalf("verify: %v %+v", err, v)
	}
	// Event 200 is the first Iterate(199) returns; the walk stops there.
	stop := errors.New("stop")
	if err := st.Iterate(199, true, func(e *journal.Envelope) error {
		if e.Seq != 200 || !bytes.Equal(e.Encode(), h.envs[199]) {
			return fmt.Errorf("event %d is not the original event 200", e.Seq)
		}
		return stop
	}); !errors.Is(err, stop) {
		t.Fatalf("reading event 200: %v", err)
	}
	t.Logf("damage found: %q", rep.Damage)
}
