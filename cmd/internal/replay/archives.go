package replay

import (
	"bytes"
	"fmt"
	"path/filepath"
	"time"

	"github.com/zlayer/overlayd/journal"
	"github.com/zlayer/overlayd/projections"
)

// ArchivesReport is the check of a compacted journal's archives.
type ArchivesReport struct {
	Dir      string           `json:"dir"`
	Archives []ArchiveSummary `json:"archives"`
	// Events is the number of archived events that checked out (from 1).
	Events uint64 `json:"events"`
	// State says whether a replay of the archives equals the checkpoint's
	// state.
	State    string        `json:"state,omitempty"`
	Problems []string      `json:"problems,omitempty"`
	Took     time.Duration `json:"-"`
}

// ArchiveSummary is one archive as it verified.
type ArchiveSummary struct {
	Name   string `json:"name"`
	First  uint64 `json:"first_seq"`
	Last   uint64 `json:"last_seq"`
	Events uint64 `json:"events"`
	Hash   string `json:"sha256"`
}

// OK reports whether the archives checked out.
func (r *ArchivesReport) OK() bool { return len(r.Problems) == 0 }

// DefaultArchiveDir is where a compaction of the journal in dir (the
// data dir's overlayd directory) writes its archives.
func DefaultArchiveDir(dir string) string { return filepath.Join(dir, journal.ArchiveDirName) }

// VerifyArchives proves a compacted journal's history from event 1: the
// archives its checkpoint names, found in dir, verify one by one and as
// one chain from event 1 ending at the checkpoint's hash
// (journal.VerifyArchives), and a replay of their events from the empty
// state equals the checkpoint's state (canonical JSON). Problems name the
// archive and the event, or the checkpoint.
func VerifyArchives(store journal.Store, dir string) *ArchivesReport {
	start := time.Now()
	r := &ArchivesReport{Dir: dir}
	ck := journal.CheckpointOf(store)
	if ck == nil {
		r.Problems = append(r.Problems, "the journal has no checkpoint: it was never compacted, so it has no archives (its chain is proved from event 1 without them)")
		return r
	}
	s := projections.New()
	var replayErr error
	infos, err := journal.VerifyArchives(dir, ck, func(e *journal.Envelope) error {
		if replayErr != nil {
			return nil
		}
		if err := Fold(s, e); err != nil {
			replayErr = fmt.Errorf("archived %w", err)
		}
		r.Events++
		return nil
	})
	for _, in := range infos {
		r.Archives = append(r.Archives, ArchiveSummary{Name: filepath.Base(in.Path), First: in.First, Last: in.Last, Events: in.Events, Hash: fmt.Sprintf("%x", in.Hash)})
	}
	r.Took = time.Since(start)
	if err != nil {
		r.Problems = append(r.Problems, err.Error())
		return r
	}
	if replayErr != nil {
		r.Problems = append(r.Problems, "replay of the archives: "+replayErr.Error())
		return r
	}
	want, err := checkpointState(ck)
	if err != nil {
		r.Problems = append(r.Problems, err.Error())
		return r
	}
	a, _ := s.CanonicalJSON()
	b, _ := want.CanonicalJSON()
	if !bytes.Equal(a, b) {
		r.State = fmt.Sprintf("a replay of the archives up to %d differs from the checkpoint's state", ck.Seq)
		r.Problems = append(r.Problems, fmt.Sprintf("checkpoint at %d: %s", ck.Seq, r.State))
		return r
	}
	r.State = fmt.Sprintf("a replay of the archives up to %d equals the checkpoint's state", ck.Seq)
	return r
}

// AddArchives runs VerifyArchives and adds its findings to r.
func (r *Report) AddArchives(store journal.Store, dir string) {
	a := VerifyArchives(store, dir)
	r.Archives = a
	for _, p := range a.Problems {
		r.Problems = append(r.Problems, "archives: "+p)
	}
}
