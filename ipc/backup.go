package ipc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
)

// FetchBackup takes a backup of the daemon's journal with journal_backup,
// part by part, and writes it to path atomically: a temporary file beside
// path, fsync'd, its SHA-256 checked against the daemon's, renamed over
// path, the directory fsync'd. A failure leaves path as it was. The answer
// is the backup's description (Part empty).
func FetchBackup(ctx context.Context, c *Client, path string) (BackupResult, error) {
	r, err := c.Call(ctx, JournalBackup{})
	if err != nil {
		return BackupResult{}, err
	}
	first := r.(BackupResult)
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return BackupResult{}, fmt.Errorf("backup %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	sum := sha256.New()
	p := first
	off := uint64(0)
	for {
		if p.Offset != off || p.BackupID != first.BackupID || (len(p.Part) == 0 && off < first.Size) {
			return BackupResult{}, fmt.Errorf("journal_backup: asked for backup %d at offset %d, got backup %d at %d (+%d bytes)", first.BackupID, off, p.BackupID, p.Offset, len(p.Part))
		}
		if _, err := f.Write(p.Part); err != nil {
			return BackupResult{}, fmt.Errorf("backup %s: %w", path, err)
		}
		sum.Write(p.Part)
		off += uint64(len(p.Part))
		if off >= first.Size {
			break
		}
		id, at := first.BackupID, off
		r, err := c.Call(ctx, JournalBackup{BackupID: &id, Offset: &at})
		if err != nil {
			return BackupResult{}, err
		}
		p = r.(BackupResult)
	}
	if off != first.Size {
		return BackupResult{}, fmt.Errorf("journal_backup: got %d bytes of a %d-byte backup", off, first.Size)
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != first.SHA256 {
		return BackupResult{}, fmt.Errorf("journal_backup: the copy received has SHA-256 %s, the daemon's has %s", got, first.SHA256)
	}
	if err := f.Sync(); err != nil {
		return BackupResult{}, fmt.Errorf("backup %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return BackupResult{}, fmt.Errorf("backup %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return BackupResult{}, fmt.Errorf("backup %s: %w", path, err)
	}
	ok = true
	if err := syncDir(filepath.Dir(path)); err != nil {
		return BackupResult{}, fmt.Errorf("backup %s: written, but the directory sync failed: %w", path, err)
	}
	first.Part = nil
	return first, nil
}
