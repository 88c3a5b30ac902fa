package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/journal"
)

func newBackupCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "backup FILE",
		Short: "Write a consistent copy of the journal to FILE (through the daemon while it runs)",
		Long: `backup writes a consistent copy of the journal file to FILE: the file as one
read transaction sees it (bbolt's Tx.WriteTo), so it holds exactly the
events committed at that moment, and opens as a journal of its own (same
journal id, hash chain, indexes and checkpoint).

While the daemon runs the copy is taken by the daemon (extension op
journal_backup) without stopping its commits, and streamed in parts; with
the daemon stopped the journal is opened read-only and copied. FILE is
written atomically (a temporary file beside it, fsync'd, its SHA-256
checked, renamed). Restore it with "overlayctl restore FILE" (docs/backup.md).`,
		Example: `  overlayctl backup /var/backups/overlayd-$(date -u +%F).db
  overlayctl backup node.db -o json`,
		Args: exactArgs(1, "the backup file"),
		RunE: func(c *cobra.Command, args []string) error { return a.backup(c.Context(), args[0]) },
	}
}

// backupReport is what backup prints.
type backupReport struct {
	Source  string `json:"source"`
	File    string `json:"file"`
	Journal string `json:"journal_id"`
	HeadSeq uint64 `json:"head_seq"`
	Size    uint64 `json:"size"`
	SHA256  string `json:"sha256"`
	// Of a compacted journal (offline only): the checkpoint, and the
	// archives holding the events before it, which the copy does not hold.
	CheckpointSeq uint64               `json:"checkpoint_seq,omitempty"`
	Archives      []journal.ArchiveRef `json:"archives,omitempty"`
	ArchiveDir    string               `json:"archive_dir,omitempty"`
}

func (a *app) backup(ctx context.Context, file string) error {
	if ctx == nil {
		ctx = context.Background()
	}
	file, err := filepath.Abs(file)
	if err != nil {
		return err
	}
	var rep backupReport
	st, err := a.store()
	switch {
	case err == nil:
		defer st.Close()
		info, err := backupOffline(st, file)
		if err != nil {
			return err
		}
		rep = backupReport{Source: fmt.Sprintf("journal file %s (offline)", st.Path()), Journal: info.Journal.String(), HeadSeq: info.Seq,
			Size: uint64(info.Size), SHA256: hex.EncodeToString(info.SHA256[:])}
		if ck := st.Checkpoint(); ck != nil {
			rep.CheckpointSeq, rep.Archives = ck.Seq, ck.Archives
			rep.ArchiveDir = filepath.Join(filepath.Dir(st.Path()), journal.ArchiveDirName)
		}
	case errors.Is(err, journal.ErrLocked):
		c, err := a.client(ctx)
		if err != nil {
			return unreachable(fmt.Errorf("the journal is held by a running daemon, and %w", errors.Unwrap(err)))
		}
		defer c.Close()
		r, err := ipc.FetchBackup(ctx, c, file)
		if err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		rep = backupReport{Source: fmt.Sprintf("live daemon (socket %s)", a.socketPath()), Journal: r.JournalID, HeadSeq: r.HeadSeq, Size: r.Size, SHA256: r.SHA256}
	default:
		return err
	}
	rep.File = file
	if !a.printer().Table() {
		return a.printer().Object(rep)
	}
	fmt.Fprintf(a.out, "source:   %s\n", rep.Source)
	fmt.Fprintf(a.out, "backup:   %s\n", rep.File)
	fmt.Fprintf(a.out, "journal:  %s\n", rep.Journal)
	fmt.Fprintf(a.out, "head:     event %d\n", rep.HeadSeq)
	fmt.Fprintf(a.out, "size:     %d bytes\n", rep.Size)
	fmt.Fprintf(a.out, "sha256:   %s\n", rep.SHA256)
	if rep.CheckpointSeq != 0 {
		fmt.Fprintf(a.out, "checkpoint: at %d; the events before it are not in the backup but in the archives in %s (keep them with it):\n", rep.CheckpointSeq, rep.ArchiveDir)
		for _, ar := range rep.Archives {
			fmt.Fprintf(a.out, "  %s: events %d..%d\n", ar.Name, ar.First, ar.Last)
		}
	}
	return nil
}

// backupOffline copies a journal opened read-only to file, atomically.
func backupOffline(st *journal.BoltStore, file string) (journal.BackupInfo, error) {
	f, err := os.CreateTemp(filepath.Dir(file), ".tmp-"+filepath.Base(file)+"-*")
	if err != nil {
		return journal.BackupInfo{}, fmt.Errorf("backup %s: %w", file, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	info, err := st.Backup(f)
	if err != nil {
		return info, fmt.Errorf("backup: %w", err)
	}
	if err := f.Sync(); err != nil {
		return info, fmt.Errorf("backup %s: %w", file, err)
	}
	if err := f.Close(); err != nil {
		return info, fmt.Errorf("backup %s: %w", file, err)
	}
	if sum, err := fileSum(tmp); err != nil || sum != info.SHA256 {
		return info, fmt.Errorf("backup %s: the copy written does not read back as written (%v)", file, err)
	}
	if err := os.Rename(tmp, file); err != nil {
		return info, fmt.Errorf("backup %s: %w", file, err)
	}
	ok = true
	return info, syncDir(filepath.Dir(file))
}

func fileSum(path string) ([32]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return [32]byte{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return [32]byte{}, err
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum, nil
}

// syncDir fsyncs a directory (a rename in it is then durable); a no-op
// where directories cannot be opened for it.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return nil
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
