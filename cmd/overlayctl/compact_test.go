package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zlayer/overlayd/journal"
)

// TestJournalCompactOffline: `journal compact` on a stopped node's
// journal archives the events before the point, the state is the same
// after, `journal verify` proves the chain from the checkpoint and, with
// --archives, from the first event; a changed byte in the archive makes
// verify exit 1 naming it; bad points are usage errors (exit 2); a held
// journal with --offline is refused, and without a daemon answering is
// exit 3.
func TestJournalCompactOffline(t *testing.T) {
	data := t.TempDir()
	makeNode(t, data, 300)
	_, stateBefore, _ := ctl(t, data, "-o", "json", "state")

	code, out, errOut := ctl(t, data, "journal", "compact", "--before", "201")
	if code != 0 || !strings.Contains(out, "checkpoint:  at 200;") || !strings.Contains(out, "source:      journal file") {
		t.Fatalf("compact: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("compact:\n%s", out)
	_, stateAfter, _ := ctl(t, data, "-o", "json", "state")
	if stateWithoutSeq(t, jsonState(t, stateBefore)) != stateWithoutSeq(t, jsonState(t, stateAfter)) {
		t.Fatalf("the state changed:\n%s\n%s", stateBefore, stateAfter)
	}
	code, out, errOut = ctl(t, data, "journal", "verify")
	if code != 0 || !strings.Contains(out, "checkpoint: at 200") {
		t.Fatalf("verify: exit %d\n%s%s", code, out, errOut)
	}
	adir := filepath.Join(data, "overlayd", journal.ArchiveDirName)
	code, out, errOut = ctl(t, data, "journal", "verify", "--archives", adir)
	if code != 0 || !strings.Contains(out, "200 events from the first, a replay of the archives up to 200 equals the checkpoint's state") {
		t.Fatalf("verify --archives: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("verify --archives:\n%s", out)

	// Again, as JSON: the second archive chains to the first.
	code, out, errOut = ctl(t, data, "-o", "json", "journal", "compact", "--before", "251")
	var rep struct {
		Source        string `json:"source"`
		FirstSeq      uint64 `json:"first_seq"`
		CheckpointSeq uint64 `json:"checkpoint_seq"`
		Archive       string `json:"archive"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.FirstSeq != 201 || rep.CheckpointSeq != 250 || !strings.Contains(rep.Source, "(offline)") {
		t.Fatalf("compact -o json: exit %d %+v\n%s%s", code, rep, out, errOut)
	}
	if code, out, _ = ctl(t, data, "journal", "verify", "--archives", adir); code != 0 || strings.Count(out, "archive:    ") != 2 {
		t.Fatalf("verify with two archives: exit %d\n%s", code, out)
	}

	// A changed byte in the second archive.
	b, err := os.ReadFile(rep.Archive)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	os.WriteFile(rep.Archive, b, 0o600)
	code, out, _ = ctl(t, data, "journal", "verify", "--archives", adir)
	if code != 1 || !strings.Contains(out, "archive "+filepath.Base(rep.Archive)+": event ") {
		t.Fatalf("verify of a changed archive: exit %d\n%s", code, out)
	}

	for _, args := range [][]string{{"journal", "compact"}, {"journal", "compact", "--before", "yesterday"}, {"journal", "compact", "--before", "0"}} {
		if code, _, _ := ctl(t, data, args...); code != 2 {
			t.Fatalf("%v: exit %d, want 2", args, code)
		}
	}
	s, err := journal.Open(filepath.Join(data, "overlayd"), journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if code, _, errOut := ctl(t, data, "journal", "compact", "--offline", "--before", "280"); code != 4 || !strings.Contains(errOut, "held by another process") {
		t.Fatalf("compact --offline of a held journal: exit %d %s", code, errOut)
	}
	if code, _, errOut := ctl(t, data, "journal", "compact", "--before", "280"); code != 3 {
		t.Fatalf("compact of a held journal, no daemon answering: exit %d %s", code, errOut)
	}
}

// jsonState is the state document of `state -o json` (with or without a
// source wrapper).
func jsonState(t *testing.T, out string) string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("state -o json: %v\n%s", err, out)
	}
	if st, ok := m["state"]; ok {
		return string(st)
	}
	return out
}
