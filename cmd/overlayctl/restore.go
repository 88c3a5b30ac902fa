package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/zlayer/overlayd/cmd/internal/replay"
	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/journal"
)

func newRestoreCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "restore FILE",
		Short: "Offline: make a backup the node's journal (the current one is kept aside)",
		Long: `restore makes FILE (written by "overlayctl backup") the journal of --data-dir.
It works offline only: it refuses (exit 4) while a daemon holds the journal
or answers on the socket. It first verifies the backup (the file's pages,
the hash chain, a full replay and the state's invariants) and refuses a
backup that fails. Then it keeps the current journal as
journal.db.replaced-<UTC time>, puts the backup in its place (atomically),
and moves aside a snapshot that does not belong to the restored journal
(another journal's, past its head, or anchored on another event), so the
next boot replays the restored journal instead. Start the daemon afterwards;
the node comes back in exactly the state at the backup's last event.
docs/backup.md describes the procedure.`,
		Example: `  systemctl stop zlayer-overlayd
  overlayctl --data-dir /var/lib/zlayer restore /var/backups/overlayd-2026-12-01.db
  systemctl start zlayer-overlayd`,
		Args: exactArgs(1, "the backup file"),
		RunE: func(c *cobra.Command, args []string) error { return a.restore(c.Context(), args[0]) },
	}
}

// restoreReport is what restore prints.
type restoreReport struct {
	Source   string `json:"source"`
	Backup   string `json:"backup"`
	Journal  string `json:"journal"`
	ID       string `json:"journal_id"`
	HeadSeq  uint64 `json:"head_seq"`
	Replaced string `json:"replaced,omitempty"` // where the journal that was there went
	Snapshot string `json:"snapshot"`           // kept, none, or where it went
	// A compacted backup holds FirstSeq..HeadSeq after a checkpoint at
	// CheckpointSeq; the events before it are in Archives (names in
	// <data-dir>/overlayd/archive), which the backup file does not hold.
	FirstSeq      uint64           `json:"first_seq"`
	CheckpointSeq uint64           `json:"checkpoint_seq,omitempty"`
	Archives      []restoreArchive `json:"archives,omitempty"`
}

// restoreArchive is an archive a restored compacted journal refers to, and
// whether it is in the data dir's archive directory.
type restoreArchive struct {
	journal.ArchiveRef
	Present bool `json:"present"`
}

func (a *app) restore(ctx context.Context, file string) error {
	if ctx == nil {
		ctx = context.Background()
	}
	dir := a.journalDir()
	jpath := filepath.Join(dir, journal.FileName)
	if err := a.refuseWhileRunning(ctx, jpath); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	// The backup is copied next to the journal (the same file system, for
	// the rename) and checked there, as the journal it will become.
	tmpDir, err := os.MkdirTemp(dir, ".tmp-restore-")
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer os.RemoveAll(tmpDir)
	staged := filepath.Join(tmpDir, journal.FileName)
	if err := copyFileSync(file, staged); err != nil {
		return fmt.Errorf("restore: copy %s: %w", file, err)
	}
	st, err := journal.Open(tmpDir, journal.Options{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("restore: %s is not a journal that opens: %w", file, err)
	}
	id := st.Identity().ID
	head, headHash := st.Head()
	ckpt := st.Checkpoint()
	rep, err := replay.Verify(st, nil, 0)
	st.Close()
	if err != nil {
		return fmt.Errorf("restore: verify %s: %w", file, err)
	}
	if !rep.OK() {
		for _, p := range rep.Problems {
			fmt.Fprintf(a.errOut, "overlayctl: restore: %s: %s\n", file, p)
		}
		return fmt.Errorf("restore: %s does not verify (%d problem(s)); nothing was changed", file, len(rep.Problems))
	}
	if head == 0 {
		return fmt.Errorf("restore: %s holds no event; nothing was changed", file)
	}
	stamp := time.Now().UTC().Format("20060102T150405Z")
	out := restoreReport{Source: fmt.Sprintf("journal file %s (offline)", jpath), Backup: file, Journal: jpath, ID: id.String(), HeadSeq: head, Snapshot: "none", FirstSeq: 1}
	if ckpt != nil {
		out.FirstSeq, out.CheckpointSeq = ckpt.Seq+1, ckpt.Seq
		for _, ar := range ckpt.Archives {
			_, err := os.Stat(filepath.Join(dir, journal.ArchiveDirName, ar.Name))
			out.Archives = append(out.Archives, restoreArchive{ArchiveRef: ar, Present: err == nil})
		}
	}
	if _, err := os.Stat(jpath); err == nil {
		out.Replaced = jpath + ".replaced-" + stamp
		if err := os.Rename(jpath, out.Replaced); err != nil {
			return fmt.Errorf("restore: keep the current journal: %w; nothing was changed", err)
		}
	}
	if err := os.Rename(staged, jpath); err != nil {
		if out.Replaced != "" {
			os.Rename(out.Replaced, jpath)
		}
		return fmt.Errorf("restore: put the backup in place: %w (the current journal is back)", err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	snap, serr := journal.ReadSnapshotFile(dir)
	snapPath := filepath.Join(dir, journal.SnapshotFileName)
	switch why := snapshotMismatch(snap, serr, id, head, headHash, jpath); {
	case snap == nil && serr == nil:
	case why == "":
		out.Snapshot = "kept (" + snapPath + ", event " + fmt.Sprint(snap.Seq) + ", belongs to the restored journal)"
	default:
		aside := snapPath + ".replaced-" + stamp
		if err := os.Rename(snapPath, aside); err != nil {
			return fmt.Errorf("restore: the journal is restored, but the snapshot %s, which %s, could not be moved aside: %w; remove it before starting the daemon", snapPath, why, err)
		}
		syncDir(dir)
		out.Snapshot = "moved aside to " + aside + " (it " + why + ")"
	}
	if !a.printer().Table() {
		return a.printer().Object(out)
	}
	fmt.Fprintf(a.out, "source:    %s\n", out.Source)
	fmt.Fprintf(a.out, "restored:  %s from %s (journal %s, events %d..%d, verified)\n", jpath, file, out.ID, out.FirstSeq, head)
	if ckpt != nil {
		fmt.Fprintf(a.out, "checkpoint: at %d; the events before it are in the archives, which a backup does not hold:\n", ckpt.Seq)
		adir := filepath.Join(dir, journal.ArchiveDirName)
		for _, ar := range out.Archives {
			where := "present in " + adir
			if !ar.Present {
				where = "missing from " + adir + ": copy it there from the node the backup was taken on to verify from event 1"
			}
			fmt.Fprintf(a.out, "  %s: events %d..%d, %s\n", ar.Name, ar.First, ar.Last, where)
		}
	}
	if out.Replaced != "" {
		fmt.Fprintf(a.out, "replaced:  the previous journal is kept as %s\n", out.Replaced)
	}
	fmt.Fprintf(a.out, "snapshot:  %s\n", out.Snapshot)
	return nil
}

// refuseWhileRunning fails while a daemon holds the journal or answers on
// the socket.
func (a *app) refuseWhileRunning(ctx context.Context, jpath string) error {
	if _, err := os.Stat(jpath); err == nil {
		st, err := journal.Open(filepath.Dir(jpath), journal.Options{ReadOnly: true, LockTimeout: 200 * time.Millisecond})
		if errors.Is(err, journal.ErrLocked) {
			return fmt.Errorf("restore: a daemon holds %s; stop it first (restore works offline only); nothing was changed", jpath)
		}
		if err == nil {
			st.Close()
		}
		// A journal that does not open (damaged) is what a restore is for.
	}
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	sock := a.socketPath()
	if c, err := ipc.Dial(dctx, sock, ipc.DialOptions{}); err == nil {
		_, cerr := c.Call(dctx, ipc.Status{})
		c.Close()
		if cerr == nil {
			return fmt.Errorf("restore: a daemon answers on %s; stop it first (restore works offline only); nothing was changed", sock)
		}
	}
	return nil
}

// snapshotMismatch says why the snapshot does not belong to the restored
// journal (id, head, head hash); "" when it does. The hash of the event
// it is anchored on is read from the restored journal.
func snapshotMismatch(snap *journal.Snapshot, serr error, id journal.ID, head uint64, headHash [32]byte, jpath string) string {
	switch {
	case serr != nil:
		return fmt.Sprintf("is unreadable (%v)", serr)
	case snap == nil:
		return ""
	case snap.Journal != id:
		return fmt.Sprintf("was taken from journal %s, not %s", snap.Journal, id)
	case snap.Seq > head:
		return fmt.Sprintf("holds the state up to event %d, past the restored head %d", snap.Seq, head)
	case snap.Seq == head:
		if snap.Hash != headHash {
			return fmt.Sprintf("is anchored on an event %d that is not the restored one", snap.Seq)
		}
		return ""
	}
	st, err := journal.Open(filepath.Dir(jpath), journal.Options{ReadOnly: true})
	if err != nil {
		return fmt.Sprintf("cannot be checked against the restored journal (%v)", err)
	}
	defer st.Close()
	h, err := st.HashAt(snap.Seq)
	if err != nil || h != snap.Hash {
		return fmt.Sprintf("is anchored on an event %d that is not the restored one", snap.Seq)
	}
	return ""
}

// copyFileSync copies src to dst (new) and fsyncs it.
func copyFileSync(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
