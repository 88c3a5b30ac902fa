package journal

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	bolt "go.etcd.io/bbolt"
)

// BackupInfo describes a copy of the journal file written by Backup.
type BackupInfo struct {
	Journal ID       // the journal's id (the copy keeps it)
	Seq     uint64   // the copy's last event (its head)
	Hash    [32]byte // that event's hash
	Size    int64    // bytes written
	SHA256  [32]byte // of the bytes written
}

// ErrBackupUnsupported is returned by Backup on a store that has no file.
var ErrBackupUnsupported = errors.New("journal: this store has no file to back up")

// Backup writes a consistent copy of the journal file to w: the whole
// bbolt file as one read transaction sees it (bbolt's Tx.WriteTo), so the
// copy holds exactly the events committed when the transaction began,
// with their index entries, retained states and meta, and opens as a
// journal of its own (same id). Commits go on meanwhile (bbolt readers do
// not block the writer). It works on a read-only open too (offline
// backup). It refuses while the store is read-only after a failed commit:
// the file may then hold an event that was answered as failed.
func (s *BoltStore) Backup(w io.Writer) (BackupInfo, error) {
	if h := s.Health(); !h.OK() {
		return BackupInfo{}, fmt.Errorf("journal: backup of %s refused while writes fail (the file may hold a commit that was answered as failed): %w", s.path, h.Err)
	}
	info := BackupInfo{Journal: s.ident.ID}
	sum := sha256.New()
	err := s.view("backup", func(tx *bolt.Tx) error {
		if m := tx.Bucket(bucketMeta); m != nil {
			if hr := decodeHead(m.Get(keyHead)); hr != nil {
				info.Seq, info.Hash = hr.seq, hr.hash
			}
		}
		if b := tx.Bucket(bucketEvents); info.Seq == 0 && b != nil {
			if k, v := b.Cursor().Last(); len(k) == 8 { // a journal written before the head record
				if e, err := decodeEnvelope(v, false); err == nil {
					info.Seq, info.Hash = e.Seq, e.Hash
				}
			}
		}
		n, err := tx.WriteTo(io.MultiWriter(w, sum))
		info.Size = n
		return err
	})
	if err != nil {
		return BackupInfo{}, s.wrapRead("backup", err)
	}
	sum.Sum(info.SHA256[:0])
	return info, nil
}

// Backup is not possible for a MemStore: ErrBackupUnsupported.
func (m *MemStore) Backup(w io.Writer) (BackupInfo, error) {
	return BackupInfo{}, ErrBackupUnsupported
}

// Backuper is a store whose file can be copied while it is in use.
type Backuper interface {
	Backup(w io.Writer) (BackupInfo, error)
}

var (
	_ Backuper = (*BoltStore)(nil)
	_ Backuper = (*MemStore)(nil)
)
