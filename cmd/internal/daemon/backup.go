package daemon

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/journal"
)

// backupPart is the most of a backup one journal_backup answer carries:
// base64 in a JSON string, 2 MiB is 2.7 MiB of a frame's 8.
const backupPart = 2 << 20

// backupTTL is how long a backup's copy is kept for its parts to be read.
const backupTTL = 2 * time.Minute

// maxBackups bounds the copies kept at once (each is the journal's size on
// disk).
const maxBackups = 2

// backups are the journal_backup copies being served: temporary files in
// the data dir (".tmp-backup-*", which a boot removes if a crash left
// them), each removed once its last part is served, after backupTTL, or
// at stop.
type backups struct {
	mu   sync.Mutex
	next uint64
	m    map[uint64]*backupCopy
}

type backupCopy struct {
	path  string
	info  journal.BackupInfo
	timer *time.Timer
}

func (bs *backups) put(b *backupCopy) (uint64, error) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.m == nil {
		bs.m = map[uint64]*backupCopy{}
	}
	if len(bs.m) >= maxBackups {
		return 0, fmt.Errorf("%d backups are being read already; try again once one is done (each is kept at most %v)", len(bs.m), backupTTL)
	}
	bs.next++
	id := bs.next
	bs.m[id] = b
	b.timer = time.AfterFunc(backupTTL, func() { bs.drop(id) })
	return id, nil
}

func (bs *backups) get(id uint64) *backupCopy {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	return bs.m[id]
}

// drop removes backup id's copy.
func (bs *backups) drop(id uint64) {
	bs.mu.Lock()
	b := bs.m[id]
	delete(bs.m, id)
	bs.mu.Unlock()
	if b != nil {
		b.timer.Stop()
		os.Remove(b.path)
	}
}

// dropAll removes every copy (at stop).
func (bs *backups) dropAll() {
	bs.mu.Lock()
	ids := make([]uint64, 0, len(bs.m))
	for id := range bs.m {
		ids = append(ids, id)
	}
	bs.mu.Unlock()
	for _, id := range ids {
		bs.drop(id)
	}
}

// journalBackup answers journal_backup: a new consistent copy of the
// journal file (journal.BoltStore.Backup, one read transaction: commits go
// on) and its first part, or the next part of an earlier one. It runs off
// the connection's reader (an expensive op).
func (d *Daemon) journalBackup(r ipc.JournalBackup) ipc.Response {
	if r.BackupID != nil {
		b := d.backups.get(*r.BackupID)
		if b == nil {
			return ipc.Err{Message: fmt.Sprintf("journal_backup: backup_id: %d is unknown, done or expired; ask again without backup_id", *r.BackupID)}
		}
		off := uint64(0)
		if r.Offset != nil {
			off = *r.Offset
		}
		return d.backupPart(*r.BackupID, b, off)
	}
	bk, ok := d.store.(journal.Backuper)
	if !ok {
		return ipc.Err{Message: "journal_backup: this daemon's journal is not a file (an in-memory store)"}
	}
	f, err := os.CreateTemp(d.dir, ".tmp-backup-*")
	if err != nil {
		return ipc.Err{Message: "journal_backup: temporary copy: " + err.Error()}
	}
	start := time.Now()
	info, err := bk.Backup(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && info.Size <= 0 {
		err = errors.New("the copy is empty")
	}
	if err != nil {
		os.Remove(f.Name())
		return ipc.Err{Message: "journal_backup: " + err.Error()}
	}
	b := &backupCopy{path: f.Name(), info: info}
	id, err := d.backups.put(b)
	if err != nil {
		os.Remove(f.Name())
		return ipc.Err{Message: "journal_backup: " + err.Error()}
	}
	d.log.Info("journal backup taken", "backup_id", id, "seq", info.Seq, "bytes", info.Size, "sha256", hex.EncodeToString(info.SHA256[:]),
		"took", time.Since(start).Round(time.Millisecond))
	return d.backupPart(id, b, 0)
}

// backupPart answers the part of backup id at off; the copy is removed
// once its last part is served.
func (d *Daemon) backupPart(id uint64, b *backupCopy, off uint64) ipc.Response {
	size := uint64(b.info.Size)
	if off >= size {
		return ipc.Err{Message: fmt.Sprintf("journal_backup: offset: %d is not inside the backup (%d bytes)", off, size)}
	}
	n := min(backupPart, size-off)
	f, err := os.Open(b.path)
	if err != nil {
		return ipc.Err{Message: fmt.Sprintf("journal_backup: backup %d: %v", id, err)}
	}
	buf := make([]byte, n)
	_, err = f.ReadAt(buf, int64(off))
	f.Close()
	if err != nil && !errors.Is(err, io.EOF) {
		return ipc.Err{Message: fmt.Sprintf("journal_backup: backup %d: read at %d: %v", id, off, err)}
	}
	if off+n == size {
		d.backups.drop(id)
	}
	return ipc.BackupResult{BackupID: id, JournalID: b.info.Journal.String(), HeadSeq: b.info.Seq, HeadHash: hex.EncodeToString(b.info.Hash[:]),
		Size: size, SHA256: hex.EncodeToString(b.info.SHA256[:]), Offset: off, Part: buf}
}
