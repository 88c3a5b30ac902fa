package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/zlayer/overlayd/journal"
)

// ErrLostHistory is returned by Open when the data dir shows that the
// journal has lost acknowledged history, or is not the journal the rest of
// the data dir belongs to. The daemon then refuses to boot: serving,
// reconciling or cleaning up from such a journal would undo acknowledged
// decisions (delete bridges whose containers are running, hand out
// addresses that are in use), and writing a snapshot would overwrite the
// only remaining copy of the state.
var ErrLostHistory = errors.New("the journal has lost acknowledged history or belongs to another data dir")

// checkBeforeOpen refuses, before the journal is opened (opening an empty
// file would initialise it, and the evidence with it), a journal file that
// is missing or empty while the data dir holds a snapshot or key files.
func checkBeforeOpen(dir string) error {
	jpath := filepath.Join(dir, journal.FileName)
	fi, err := os.Stat(jpath)
	what := "is missing"
	switch {
	case err == nil && fi.Size() > 0:
		return nil
	case err == nil:
		what = "is empty (0 bytes)"
	case !errors.Is(err, os.ErrNotExist):
		return nil // journal.Open reports it
	}
	if snap := filepath.Join(dir, journal.SnapshotFileName); exists(snap) {
		return refusal(dir, "journal %s %s, but the snapshot %s holds this node's state: the journal was lost or emptied", jpath, what, snap)
	}
	return keysBeside(dir, jpath, what)
}

// keysBeside refuses a journal without events (what says how) beside the
// node's key files: the key is written only after the journal recorded it.
func keysBeside(dir, jpath, what string) error {
	if keys := keyFiles(dir); len(keys) > 0 {
		return refusal(dir, "journal %s %s, but %s exists: the node's key is written only after the journal recorded it, so this node had a journal", jpath, what, keys[0])
	}
	return nil
}

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

func refusal(dir, format string, args ...any) error {
	return fmt.Errorf("%w: %s. No kernel object was touched, and the journal, snapshot and key files are as they were. "+
		"Restore the journal from a backup, or run `overlayctl --data-dir %s journal repair` to salvage what it still holds; "+
		"to start this node afresh instead, move %s away",
		ErrLostHistory, fmt.Sprintf(format, args...), filepath.Dir(dir), dir)
}

// checkHistory compares the journal with what else the data dir holds:
// its snapshot and the node's key files. It reads only; it never changes a
// file, and it runs before anything touches the kernel.
func checkHistory(dir string, store journal.Store) error {
	jpath := filepath.Join(dir, journal.FileName)
	id := store.Identity()
	head, _ := store.Head()
	snapPath := filepath.Join(dir, journal.SnapshotFileName)
	snap, snapErr := store.LoadSnapshot()
	snapExists := snap != nil || snapErr != nil || exists(snapPath)
	refuse := func(format string, args ...any) error { return refusal(dir, format, args...) }
	if head == 0 {
		what := "has no events"
		if id.Fresh {
			what = "was empty or missing, and has no events"
		}
		switch {
		case snap != nil:
			return refuse("journal %s %s, but the snapshot %s holds the state up to event %d%s", jpath, what, snapPath, snap.Seq, ofJournal(snap.Journal))
		case snapExists:
			return refuse("journal %s %s, but a snapshot %s exists (%v): this node had a history", jpath, what, snapPath, snapErr)
		}
		return keysBeside(dir, jpath, what)
	}
	if snap == nil {
		return nil // no snapshot, or an unreadable one: a full replay verifies every event
	}
	if id.ID.IsZero() {
		id.Legacy = true // a store without ids: nothing to compare
	}
	switch {
	case !snap.Journal.IsZero() && !id.ID.IsZero() && snap.Journal != id.ID:
		return refuse("the snapshot %s was taken from journal %s, but %s is journal %s", snapPath, snap.Journal, jpath, id.ID)
	case snap.Journal.IsZero() && !id.Legacy:
		return refuse("the snapshot %s predates journal ids, but %s was created with id %s after it: the two do not belong together", snapPath, jpath, id.ID)
	case snap.Seq > head:
		return refuse("journal %s ends at event %d, but the snapshot %s holds the state up to event %d: events %d..%d are lost", jpath, head, snapPath, snap.Seq, head+1, snap.Seq)
	}
	if ck := journal.CheckpointOf(store); ck != nil && snap.Seq < ck.Seq {
		// A compacted journal (CMP): the snapshot is older than the
		// checkpoint, whose state boot starts from instead; the events the
		// snapshot is anchored on are in the archives.
		return nil
	}
	if snap.Seq > 0 {
		h, err := store.HashAt(snap.Seq)
		if err != nil {
			return refuse("the snapshot %s is anchored on event %d, which journal %s cannot read: %v", snapPath, snap.Seq, jpath, err)
		}
		if h != snap.Hash {
			return refuse("the snapshot %s is anchored on event %d with hash %x…, but that event in %s has hash %x…: the journal's history is not the one the snapshot was taken from",
				snapPath, snap.Seq, snap.Hash[:8], jpath, h[:8])
		}
	}
	return nil
}

func ofJournal(id journal.ID) string {
	if id.IsZero() {
		return ""
	}
	return " of journal " + id.String()
}

// keyFiles lists the private key files in the data dir.
func keyFiles(dir string) []string {
	var out []string
	if _, err := os.Stat(filepath.Join(dir, nodeKeyFile)); err == nil {
		out = append(out, filepath.Join(dir, nodeKeyFile))
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "keys"))
	for _, e := range ents {
		if filepath.Ext(e.Name()) == ".key" {
			out = append(out, filepath.Join(dir, "keys", e.Name()))
		}
	}
	return out
}
