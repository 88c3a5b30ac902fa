package replay

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/zlayer/overlayd/journal"
	"github.com/zlayer/overlayd/projections"
)

// RepairOptions tune Repair.
type RepairOptions struct {
	// Now stamps the broken copy's name (default time.Now).
	Now func() time.Time
	// Force rewrites the journal even when nothing is found wrong.
	Force bool
}

// ErrCompactedRepair is returned by Repair for a compacted journal.
var ErrCompactedRepair = errors.New("a compacted journal cannot be repaired by salvage")

// repairLockTimeout bounds Repair's wait for the journal's lock: a running
// daemon holds it, and Repair then refuses.
const repairLockTimeout = 200 * time.Millisecond

// RepairReport says what Repair found, kept and lost.
type RepairReport struct {
	File string `json:"file"`
	// BrokenCopy is the copy of the file as it was (empty when nothing
	// needed repair: the copy is then removed).
	BrokenCopy string `json:"broken_copy,omitempty"`
	// Changed is false when nothing needed repair and nothing was written.
	Changed bool   `json:"changed"`
	Journal string `json:"journal_id"`
	// JournalFrom says where the id came from: "file", "snapshot" (the
	// file's was unreadable) or "new" (none was found; Legacy is set).
	JournalFrom string `json:"journal_id_from"`
	Legacy      bool   `json:"legacy,omitempty"`
	// Salvaged events 1..Salvaged are kept byte for byte (their hash chain
	// verifies from sequence 1); ReadThroughBbolt of them came from
	// bbolt's tree, the others from the scan of the raw pages.
	Salvaged         uint64 `json:"salvaged"`
	ReadThroughBbolt uint64 `json:"read_through_bbolt"`
	// Highest is the highest sequence seen anywhere in the file.
	Highest uint64 `json:"highest_seq_seen"`
	// Discarded counts envelopes of commits that had failed (answered as
	// failed), found in the raw pages and left out.
	Discarded int       `json:"discarded,omitempty"`
	Lost      *Loss     `json:"lost,omitempty"`
	Snapshot  SnapState `json:"snapshot"`
	// RepairedSeq is the journal_repaired event's sequence; Head the
	// repaired journal's last event.
	RepairedSeq uint64   `json:"journal_repaired_seq,omitempty"`
	Head        uint64   `json:"head"`
	Damage      []string `json:"damage,omitempty"`
	// Verified says how the repaired journal was checked.
	Verified string `json:"verified,omitempty"`
}

// Loss is the range of events a repair could not keep.
type Loss struct {
	From uint64 `json:"from"`
	To   uint64 `json:"to"`
	// Types counts the lost events that could still be read (their own
	// hash checks out), by type; Unreadable counts the others.
	Types      map[string]int `json:"types,omitempty"`
	Unreadable uint64         `json:"unreadable"`
	// CoveredBySnapshot: the snapshot is newer than the last event kept,
	// so the state up to CoveredTo survives (carried by the
	// journal_repaired event); events past CoveredTo are lost with their
	// effect.
	CoveredBySnapshot bool   `json:"covered_by_snapshot"`
	CoveredTo         uint64 `json:"covered_to,omitempty"`
}

// Count is the number of lost sequence numbers.
func (l *Loss) Count() uint64 { return l.To - l.From + 1 }

// SnapState is what Repair made of the snapshot.
type SnapState struct {
	Seq uint64 `json:"seq,omitempty"`
	// Status: "none", "unreadable", "foreign" (another journal's),
	// "schema" (another build's), "mismatch" (its anchor event differs),
	// "anchored" (its anchor event is kept), "covers" (newer than the last
	// event kept: its state is carried over).
	Status string `json:"status"`
	// Action: "kept", "rewritten" (anchored on the journal_repaired
	// event), "moved aside" (to MovedTo), "none".
	Action  string `json:"action"`
	MovedTo string `json:"moved_to,omitempty"`
	Note    string `json:"note,omitempty"`
}

// Repair rebuilds the journal in dir offline (overlayctl journal repair).
// It refuses while another process (a daemon) holds the journal's lock,
// and holds it itself throughout. It copies the file to
// journal.db.broken-<UTC time> first; salvages every event whose hash
// chain verifies from sequence 1, from bbolt's tree and from a scan of the
// raw pages (journal.SalvageFile), so also from a file bbolt cannot open;
// and writes a new journal with the same id holding them byte for byte,
// followed by one journal_repaired event recording what was lost. When
// the snapshot (this journal's, valid) is newer than the last event kept,
// that event carries the snapshot's state, so that a replay of the journal
// alone gives it, and the snapshot is rewritten to anchor on it. The new
// file is written to a temporary file, synced, renamed into place and the
// directory synced. A journal found healthy is left alone (unless Force).
func Repair(dir string, opt RepairOptions) (*RepairReport, error) {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	path := filepath.Join(dir, journal.FileName)
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("repair: %w", err)
	}
	release, err := journal.LockJournal(dir, repairLockTimeout)
	if err != nil {
		return nil, fmt.Errorf("repair: %w", err)
	}
	defer release()
	r := &RepairReport{File: path}
	stamp := opt.Now().UTC().Format("20060102T150405Z")
	broken, err := copyAside(dir, "broken-"+stamp)
	if err != nil {
		return nil, fmt.Errorf("repair: keep a copy of %s: %w", path, err)
	}
	r.BrokenCopy = broken
	sv, err := journal.SalvageFile(broken)
	if err != nil {
		return nil, fmt.Errorf("repair: %w", err)
	}
	if ck := sv.Checkpoint; ck != nil {
		// A compacted journal starts after its checkpoint; the salvage
		// builds chains from event 1, and a rewrite from it would drop
		// every event left. Nothing is changed.
		os.Remove(broken)
		return nil, fmt.Errorf("repair: %w: %s was compacted (checkpoint at %d): repair salvages chains from event 1 and would drop the events after the checkpoint, so it changed nothing; restore the journal from a backup (overlayctl backup), and check the archives with `overlayctl journal verify --archives DIR`",
			ErrCompactedRepair, path, ck.Seq)
	}
	n := sv.LastSeq()
	r.Salvaged, r.ReadThroughBbolt, r.Highest, r.Discarded = n, sv.TreeEvents, sv.Highest, sv.Discarded
	r.Damage = append(r.Damage, sv.Damage...)
	chainHash := func(seq uint64) [32]byte {
		e, err := journal.DecodeEnvelope(sv.Chain[seq-1])
		if err != nil {
			return [32]byte{}
		}
		return e.Hash
	}
	found := map[uint64]journal.Found{}
	for _, f := range sv.Beyond {
		found[f.Seq] = f
	}

	// The snapshot: is it this journal's, and newer than what was kept?
	sn, serr := journal.ReadSnapshotFile(dir)
	var carried *projections.State
	ours := false
	switch {
	case serr != nil:
		r.Snapshot = SnapState{Status: "unreadable", Action: "kept", Note: serr.Error()}
	case sn == nil:
		r.Snapshot = SnapState{Status: "none", Action: "none"}
	default:
		r.Snapshot = SnapState{Seq: sn.Seq}
		contradicted := (sn.Seq > 0 && sn.Seq <= n && chainHash(sn.Seq) != sn.Hash) ||
			(sn.Seq > n && found[sn.Seq].HashOK && found[sn.Seq].Hash != sn.Hash)
		switch {
		case !sn.Journal.IsZero() && sv.IDFound && sn.Journal != sv.ID:
			r.Snapshot.Status, r.Snapshot.Action = "foreign", "kept"
			r.Snapshot.Note = fmt.Sprintf("it belongs to journal %s, this one is %s: not used", sn.Journal, sv.ID)
		case contradicted:
			r.Snapshot.Status = "mismatch"
			r.Snapshot.Note = fmt.Sprintf("the journal's event %d is not the one the snapshot was taken at", sn.Seq)
		case sn.Schema != projections.SnapshotSchema:
			ours = true
			r.Snapshot.Status = "schema"
			r.Snapshot.Note = fmt.Sprintf("snapshot schema %d, this build reads %d: its state cannot be carried over", sn.Schema, projections.SnapshotSchema)
			if sn.Seq <= n {
				r.Snapshot.Action = "kept" // ignored at boot, harmless
			}
		case sn.Seq <= n:
			ours = true
			r.Snapshot.Status, r.Snapshot.Action = "anchored", "kept"
		default:
			ours = true
			st, err := projections.DecodeSnapshot(sn.Body)
			switch {
			case err != nil:
				r.Snapshot.Status = "unreadable"
				r.Snapshot.Note = "its state does not decode: " + err.Error()
			case st.Seq != sn.Seq:
				r.Snapshot.Status = "unreadable"
				r.Snapshot.Note = fmt.Sprintf("its body is at %d, its header at %d", st.Seq, sn.Seq)
			default:
				r.Snapshot.Status = "covers"
				carried = st
			}
		}
	}

	// The journal's id.
	ident := journal.Identity{ID: sv.ID, Legacy: sv.Legacy}
	switch {
	case sv.IDFound:
		r.JournalFrom = "file"
	case sn != nil && ours && !sn.Journal.IsZero():
		ident.ID, r.JournalFrom = sn.Journal, "snapshot"
		r.Damage = append(r.Damage, "the journal's id could not be read from the file; taken from the snapshot")
	default:
		ident = journal.Identity{ID: journal.NewID(), Legacy: true}
		r.JournalFrom = "new"
		if n > 0 {
			r.Damage = append(r.Damage, "no journal id in the file or the snapshot: a new one is given, marked legacy")
		}
	}
	r.Journal, r.Legacy = ident.ID.String(), ident.Legacy

	// What was lost.
	top := r.Highest
	if ours && sn.Seq > top {
		top = sn.Seq
	}
	if top > n {
		l := &Loss{From: n + 1, To: top}
		for _, f := range sv.Beyond {
			// A damaged envelope's type may be damaged too: only events
			// whose own hash checks out count as read.
			if f.HashOK && f.Seq >= l.From && f.Seq <= l.To {
				if l.Types == nil {
					l.Types = map[string]int{}
				}
				l.Types[f.Type]++
			}
		}
		readable := uint64(0)
		for _, c := range l.Types {
			readable += uint64(c)
		}
		l.Unreadable = l.Count() - readable
		if carried != nil {
			l.CoveredBySnapshot, l.CoveredTo = true, sn.Seq
		}
		r.Lost = l
	}

	healthy := len(sv.Damage) == 0 && r.Lost == nil && sv.TreeIntact && r.Snapshot.Status != "mismatch"
	if healthy && !opt.Force {
		os.Remove(broken)
		r.BrokenCopy = ""
		r.Head = n
		if r.Snapshot.Action == "" {
			r.Snapshot.Action = "none"
		}
		r.Verified = "nothing to repair: every event's hash chain verifies and bbolt reads the whole file"
		return r, nil
	}

	// The journal_repaired event, then the new file.
	ev := &projections.JournalRepaired{BrokenCopy: filepath.Base(broken)}
	if l := r.Lost; l != nil {
		ev.LostFrom, ev.LostTo, ev.LostTypes, ev.Unreadable = l.From, l.To, l.Types, l.Unreadable
	}
	if carried != nil {
		b, err := carried.CanonicalJSON()
		if err != nil {
			return nil, fmt.Errorf("repair: encode the snapshot's state: %w", err)
		}
		ev.SnapshotSeq, ev.State = sn.Seq, b
	}
	typ, ver, payload, err := projections.EncodeEvent(ev)
	if err != nil {
		return nil, fmt.Errorf("repair: %w", err)
	}
	envs, err := journal.Rewrite(dir, ident, sv.Chain, []journal.Record{{Type: typ, Version: ver, Cause: journal.Cause{Op: "journal_repair"}, Payload: payload}})
	if err != nil {
		return nil, fmt.Errorf("repair: %w", err)
	}
	r.Changed = true
	r.RepairedSeq, r.Head = envs[0].Seq, envs[0].Seq

	// The snapshot: anchored on the repair, kept, or moved aside.
	switch {
	case carried != nil:
		carried.Seq = r.RepairedSeq
		snap := &journal.Snapshot{Journal: ident.ID, Schema: projections.SnapshotSchema, Seq: r.RepairedSeq, Hash: envs[0].Hash, Body: carried.EncodeSnapshot()}
		if err := journal.WriteSnapshotFile(dir, snap); err != nil {
			return r, fmt.Errorf("repair: the journal is repaired, but rewriting the snapshot failed: %w", err)
		}
		r.Snapshot.Action = "rewritten"
		r.Snapshot.Note = fmt.Sprintf("anchored on event %d (journal_repaired), which carries its state", r.RepairedSeq)
	case sn != nil && r.Snapshot.Action == "":
		// Ours but unusable, or at an event that is not this journal's:
		// boot would refuse a snapshot ahead of the journal.
		to := filepath.Join(dir, journal.SnapshotFileName+".broken-"+stamp)
		if err := os.Rename(filepath.Join(dir, journal.SnapshotFileName), to); err != nil {
			return r, fmt.Errorf("repair: the journal is repaired, but moving the snapshot aside failed: %w", err)
		}
		r.Snapshot.Action, r.Snapshot.MovedTo = "moved aside", to
	}
	if err := verifyRepaired(dir, r); err != nil {
		return r, err
	}
	return r, nil
}

// copyAside keeps a copy of the journal file under a name not yet taken.
func copyAside(dir, suffix string) (string, error) {
	for i := 1; ; i++ {
		sfx := suffix
		if i > 1 {
			sfx = fmt.Sprintf("%s-%d", suffix, i)
		}
		p, err := journal.CopyAside(dir, sfx)
		if err == nil || !errors.Is(err, os.ErrExist) || i > 100 {
			return p, err
		}
	}
}

// verifyRepaired opens the repaired journal read-only: it must verify,
// and a replay of it alone must equal a replay from the snapshot.
func verifyRepaired(dir string, r *RepairReport) error {
	st, err := journal.Open(dir, journal.Options{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("repair: the repaired journal does not open: %w", err)
	}
	defer st.Close()
	rep, err := Verify(st, nil, 0)
	if err != nil {
		return fmt.Errorf("repair: verify the repaired journal: %w", err)
	}
	if !rep.OK() {
		return fmt.Errorf("repair: the repaired journal does not verify: %v", rep.Problems)
	}
	full, _, err := Load(st, Options{NoSnapshot: true, Verify: true})
	if err != nil {
		return fmt.Errorf("repair: replay the repaired journal: %w", err)
	}
	fast, stats, err := Load(st, Options{Verify: true})
	if err != nil {
		return fmt.Errorf("repair: replay the repaired journal from its snapshot: %w", err)
	}
	a, err := full.CanonicalJSON()
	if err != nil {
		return fmt.Errorf("repair: encode the state of a replay of the repaired journal: %w", err)
	}
	b, err := fast.CanonicalJSON()
	if err != nil {
		return fmt.Errorf("repair: encode the state of a replay from its snapshot: %w", err)
	}
	if string(a) != string(b) {
		return fmt.Errorf("repair: a replay of the repaired journal differs from a replay from its snapshot")
	}
	r.Verified = fmt.Sprintf("the repaired journal verifies (%d events) and replays", rep.Chain.Events)
	if stats.SnapshotSeq > 0 {
		r.Verified += fmt.Sprintf("; a replay of it alone equals the replay from the snapshot at %d", stats.SnapshotSeq)
	}
	return nil
}

// LostTypes returns the lost types sorted by name, for printing.
func (l *Loss) LostTypes() []string {
	out := make([]string, 0, len(l.Types))
	for t := range l.Types {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}
