package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/zlayer/overlayd/cmd/internal/replay"
	"github.com/zlayer/overlayd/journal"
)

func newJournalRepairCmd(a *app) *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "repair",
		Short: "Offline: salvage every event whose hash chain verifies, rewrite the journal, report what was lost",
		Long: `repair works offline (daemon stopped) on a damaged journal: it keeps a copy of
the file as it was, salvages every event whose hash chain verifies, rewrites
the journal and reports what was lost and whether the snapshot covers it.
It refuses (exit 4) while a process holds the journal.`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error { return a.journalRepair(force) },
	}
	c.Flags().BoolVar(&force, "force", false, "rewrite the journal even when nothing is found wrong")
	return c
}

// journalRepair rebuilds a damaged journal offline (replay.Repair).
func (a *app) journalRepair(force bool) error {
	rep, err := replay.Repair(a.journalDir(), replay.RepairOptions{Force: force})
	if err != nil {
		if errors.Is(err, journal.ErrLocked) {
			return fmt.Errorf("%w; repair works only on a journal no process holds", err)
		}
		if rep != nil && a.output == "table" {
			printRepair(a, rep)
		}
		return err
	}
	if a.output != "table" {
		return a.printer().Object(struct {
			Source string `json:"source"`
			*replay.RepairReport
		}{fmt.Sprintf("journal file %s (offline)", rep.File), rep})
	}
	fmt.Fprintf(a.out, "source:    journal file %s (offline)\n", rep.File)
	printRepair(a, rep)
	return nil
}

func printRepair(a *app, r *replay.RepairReport) {
	w := a.out
	fmt.Fprintf(w, "journal:   %s\n", r.File)
	fmt.Fprintf(w, "id:        %s (%s)\n", r.Journal, map[string]string{
		"file": "read from the file", "snapshot": "the file's was unreadable: taken from the snapshot",
		"new": "none found: a new one, marked legacy"}[r.JournalFrom])
	if !r.Changed {
		fmt.Fprintf(w, "result:    %s; nothing was changed (events 1..%d)\n", r.Verified, r.Head)
		return
	}
	fmt.Fprintf(w, "copy:      %s (the file as it was)\n", r.BrokenCopy)
	if len(r.Damage) > 0 {
		fmt.Fprintln(w, "found:")
		for _, d := range r.Damage {
			fmt.Fprintf(w, "  - %s\n", strings.TrimSpace(d))
		}
	}
	if r.Salvaged > 0 {
		fmt.Fprintf(w, "kept:      events 1..%d byte for byte (%d read through bbolt, the others from the raw pages)\n",
			r.Salvaged, min(r.ReadThroughBbolt, r.Salvaged))
	} else {
		fmt.Fprintln(w, "kept:      no event")
	}
	fmt.Fprintf(w, "seen:      highest sequence in the file %d", r.Highest)
	if r.Discarded > 0 {
		fmt.Fprintf(w, "; %d envelope(s) of failed commits left out", r.Discarded)
	}
	fmt.Fprintln(w)
	if l := r.Lost; l != nil {
		fmt.Fprintf(w, "lost:      events %d..%d (%d) from the history", l.From, l.To, l.Count())
		switch {
		case l.CoveredBySnapshot && l.CoveredTo >= l.To:
			fmt.Fprintf(w, "; the snapshot at %d covers them: the state survives, carried by event %d (journal_repaired)\n", l.CoveredTo, r.RepairedSeq)
		case l.CoveredBySnapshot:
			fmt.Fprintf(w, "; the snapshot at %d covers %d..%d (the state survives, carried by event %d); events %d..%d are lost with their effect\n",
				l.CoveredTo, l.From, l.CoveredTo, r.RepairedSeq, l.CoveredTo+1, l.To)
		default:
			fmt.Fprintf(w, ", not covered by a snapshot: the state is the one after event %d\n", l.From-1)
		}
		var types []string
		for _, t := range l.LostTypes() {
			types = append(types, fmt.Sprintf("%s %d", t, l.Types[t]))
		}
		if len(types) == 0 {
			types = []string{"none"}
		}
		fmt.Fprintf(w, "           readable: %s; unreadable: %d\n", strings.Join(types, ", "), l.Unreadable)
	} else {
		fmt.Fprintln(w, "lost:      nothing")
	}
	s := r.Snapshot
	switch s.Status {
	case "none":
		fmt.Fprintln(w, "snapshot:  none")
	default:
		fmt.Fprintf(w, "snapshot:  at %d: %s, %s", s.Seq, s.Status, s.Action)
		if s.MovedTo != "" {
			fmt.Fprintf(w, " to %s", s.MovedTo)
		}
		if s.Note != "" {
			fmt.Fprintf(w, " (%s)", s.Note)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "repaired:  the journal now ends at event %d (journal_repaired records the repair)\n", r.Head)
	fmt.Fprintf(w, "verified:  %s\n", r.Verified)
}
