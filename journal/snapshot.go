package journal

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// SnapshotFileName is the snapshot's file, next to the journal.
const SnapshotFileName = "snapshot"

var (
	snapshotMagicV1 = []byte("OVSN") // before journal ids
	snapshotMagic   = []byte("OVS2")
)

// ErrSnapshotCorrupt is returned for a snapshot whose header or checksum
// fails.
var ErrSnapshotCorrupt = errors.New("journal: snapshot corrupt")

// ErrSnapshotAhead is returned by SaveSnapshot for a snapshot past the
// journal's last acknowledged event.
var ErrSnapshotAhead = errors.New("journal: snapshot is past the journal's head")

// encodeSnapshot returns the file form of sn (doc.go, "Snapshot
// encoding").
func encodeSnapshot(sn *Snapshot) []byte {
	b := make([]byte, 0, 4+16+4+8+32+32+len(sn.Body))
	b = append(b, snapshotMagic...)
	b = append(b, sn.Journal[:]...)
	b = binary.BigEndian.AppendUint32(b, sn.Schema)
	b = binary.BigEndian.AppendUint64(b, sn.Seq)
	b = append(b, sn.Hash[:]...)
	sum := snapshotSum(b[4:], sn.Body)
	b = append(b, sum[:]...)
	return append(b, sn.Body...)
}

// snapshotSum is the OVS2 checksum: SHA-256 of the header fields after
// the magic (id, schema, sequence, hash), then the body.
func snapshotSum(header, body []byte) [32]byte {
	h := sha256.New()
	h.Write(header)
	h.Write(body)
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// decodeSnapshot parses a snapshot file's bytes: the current encoding, or
// the one before journal ids ("OVSN", Journal zero).
func decodeSnapshot(b []byte) (*Snapshot, error) {
	var sn Snapshot
	var rest []byte
	v2 := len(b) >= 4 && bytes.Equal(b[:4], snapshotMagic)
	switch {
	case v2:
		if len(b) < 4+16+4+8+32+32 {
			return nil, fmt.Errorf("%w: %d bytes is too short for its header", ErrSnapshotCorrupt, len(b))
		}
		copy(sn.Journal[:], b[4:20])
		rest = b[20:]
	case len(b) >= 4 && bytes.Equal(b[:4], snapshotMagicV1):
		if len(b) < 4+4+8+32+32 {
			return nil, fmt.Errorf("%w: %d bytes is too short for its header", ErrSnapshotCorrupt, len(b))
		}
		rest = b[4:]
	default:
		return nil, fmt.Errorf("%w: bad header", ErrSnapshotCorrupt)
	}
	sn.Schema = binary.BigEndian.Uint32(rest)
	sn.Seq = binary.BigEndian.Uint64(rest[4:])
	copy(sn.Hash[:], rest[12:44])
	body := rest[76:]
	var sum [32]byte
	if v2 {
		sum = snapshotSum(b[4:4+16+4+8+32], body)
	} else {
		sum = sha256.Sum256(body)
	}
	if !bytes.Equal(sum[:], rest[44:76]) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrSnapshotCorrupt)
	}
	sn.Body = append([]byte(nil), body...)
	return &sn, nil
}

// ReadSnapshotFile reads the snapshot file in dir; nil when there is none.
func ReadSnapshotFile(dir string) (*Snapshot, error) {
	path := filepath.Join(dir, SnapshotFileName)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("journal: snapshot: %w", err)
	}
	sn, err := decodeSnapshot(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return sn, nil
}

// WriteSnapshotFile replaces the snapshot file in dir atomically: a
// temporary file written and fsync'd, renamed over the old one, then the
// directory fsync'd. The failpoint "journal/snapshot-write" is hit after
// half of the temporary file is written. The snapshot is written as given
// (the caller stamps Journal).
func WriteSnapshotFile(dir string, sn *Snapshot) error {
	path := filepath.Join(dir, SnapshotFileName)
	if err := writeFileAtomic(path, encodeSnapshot(sn), "journal/snapshot-write"); err != nil {
		return fmt.Errorf("journal: snapshot %s: %w", path, err)
	}
	return nil
}

func writeFileAtomic(path string, data []byte, failpoint string) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	half := len(data) / 2
	if _, err := f.Write(data[:half]); err != nil {
		return err
	}
	hit(failpoint)
	if _, err := f.Write(data[half:]); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("renamed into place, but the directory sync failed: %w", err)
	}
	return nil
}

func (s *BoltStore) dir() string { return filepath.Dir(s.path) }

// SaveSnapshot stamps sn with this journal's id and writes it to the
// snapshot file atomically (WriteSnapshotFile). It does not go through the
// journal's writer, so a large snapshot never delays a commit; it is
// allowed while the store is read-only (the state it holds is
// acknowledged). A snapshot past Head is refused (ErrSnapshotAhead).
// Callers serialise their calls.
func (s *BoltStore) SaveSnapshot(sn *Snapshot) error {
	if s.opt.ReadOnly {
		return fmt.Errorf("journal: %s is open read-only", s.path)
	}
	s.mu.Lock()
	closing, head := s.closing, s.headSeq
	s.mu.Unlock()
	if closing {
		return ErrClosed
	}
	if sn.Seq > head {
		return fmt.Errorf("%w: snapshot at %d, head %d (%s)", ErrSnapshotAhead, sn.Seq, head, s.path)
	}
	c := *sn
	c.Journal = s.ident.ID
	return WriteSnapshotFile(s.dir(), &c)
}

// LoadSnapshot reads the snapshot file; nil when there is none. It
// returns the file as it is: a snapshot of another journal (Journal) or
// past Head means the file is not this journal's, and its reader must not
// use it.
func (s *BoltStore) LoadSnapshot() (*Snapshot, error) {
	return ReadSnapshotFile(s.dir())
}
