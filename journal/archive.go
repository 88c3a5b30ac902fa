package journal

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
)

// Archives: the events a compaction seals (doc.go, "Compaction").
//
//	header   [4] magic "OVLA", u8 version (1), [16] journal id,
//	         u64 first sequence, u64 last sequence,
//	         [32] the hash the first event links to (zero for sequence 1),
//	         u64 number of events
//	events   for each: u32 length, the envelope exactly as it was stored
//	trailer  [4] "OVLE", [32] hash of the last event,
//	         [32] SHA-256 of every preceding byte of the file (the digest)
var (
	archiveMagic   = []byte("OVLA")
	archiveTrailer = []byte("OVLE")
)

const archiveVersion = 1

// ArchiveDirName is the archive directory's name, beside the journal file.
const ArchiveDirName = "archive"

// ArchiveExt ends an archive's file name.
const ArchiveExt = ".ovla"

// ErrArchive is wrapped by every finding of an archive that does not check
// out.
var ErrArchive = errors.New("journal: archive does not verify")

// ArchiveName is the file name of the archive of events first..last of
// journal id.
func ArchiveName(id ID, first, last uint64) string {
	return fmt.Sprintf("%s-%012d-%012d%s", id, first, last, ArchiveExt)
}

// ArchiveInfo is what an archive says of itself (after VerifyArchive).
type ArchiveInfo struct {
	Path     string
	Journal  ID
	First    uint64
	Last     uint64
	PrevHash [32]byte
	LastHash [32]byte
	Events   uint64
	Hash     [32]byte // the digest in its trailer
}

// archiveWriter streams envelopes into an archive file.
type archiveWriter struct {
	f      *os.File
	w      *bufio.Writer
	h      hash.Hash
	out    io.Writer
	next   uint64
	prev   [32]byte
	n      uint64
	first  uint64
	last   uint64
	closed bool
}

func createArchive(path string, id ID, first, last uint64, prev [32]byte) (*archiveWriter, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	a := &archiveWriter{f: f, w: bufio.NewWriterSize(f, 1<<20), h: sha256.New(), next: first, prev: prev, first: first, last: last}
	a.out = io.MultiWriter(a.w, a.h)
	hdr := append([]byte(nil), archiveMagic...)
	hdr = append(hdr, archiveVersion)
	hdr = append(hdr, id[:]...)
	hdr = binary.BigEndian.AppendUint64(hdr, first)
	hdr = binary.BigEndian.AppendUint64(hdr, last)
	hdr = append(hdr, prev[:]...)
	hdr = binary.BigEndian.AppendUint64(hdr, last-first+1)
	if _, err := a.out.Write(hdr); err != nil {
		a.abort()
		return nil, err
	}
	return a, nil
}

// add appends one stored envelope; it must be the next event and check out.
func (a *archiveWriter) add(raw []byte) error {
	var e Envelope
	if err := decodeInto(&e, raw, true); err != nil {
		return fmt.Errorf("event %d: %w", a.next, err)
	}
	if e.Seq != a.next || e.PrevHash != a.prev {
		return fmt.Errorf("event %d: %w: does not follow event %d", e.Seq, ErrHashMismatch, a.next-1)
	}
	var l [4]byte
	binary.BigEndian.PutUint32(l[:], uint32(len(raw)))
	if _, err := a.out.Write(l[:]); err != nil {
		return err
	}
	if _, err := a.out.Write(raw); err != nil {
		return err
	}
	a.prev, a.next = e.Hash, a.next+1
	a.n++
	return nil
}

// finish writes the trailer, syncs and closes the file; it returns the
// digest.
func (a *archiveWriter) finish() ([32]byte, error) {
	var sum [32]byte
	if a.next != a.last+1 {
		a.abort()
		return sum, fmt.Errorf("archive ends at event %d, expected %d", a.next-1, a.last)
	}
	tr := append(append([]byte(nil), archiveTrailer...), a.prev[:]...)
	if _, err := a.out.Write(tr); err != nil {
		a.abort()
		return sum, err
	}
	a.h.Sum(sum[:0])
	if _, err := a.w.Write(sum[:]); err != nil {
		a.abort()
		return sum, err
	}
	err := a.w.Flush()
	if err == nil {
		err = a.f.Sync()
	}
	if cerr := a.f.Close(); err == nil {
		err = cerr
	}
	a.closed = true
	return sum, err
}

func (a *archiveWriter) abort() {
	if !a.closed {
		a.f.Close()
		a.closed = true
	}
}

// VerifyArchive reads the archive at path from end to end and checks it:
// its header, every envelope's own hash, its sequence and its link to the
// one before, the last hash and the digest in the trailer. fn, when set,
// is called with each event once it checked out (its payload is only valid
// during the call). Every finding wraps ErrArchive and names the archive
// and the event ("archive X: event 523: hash mismatch: ...").
func VerifyArchive(path string, fn func(*Envelope) error) (*ArchiveInfo, error) {
	name := filepath.Base(path)
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: archive %s: %s", ErrArchive, name, fmt.Sprintf(format, args...))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("journal: archive %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	br := bufio.NewReaderSize(f, 1<<20)
	r := io.TeeReader(br, h) // what the digest covers
	hdr := make([]byte, 4+1+16+8+8+32+8)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, bad("header: %v", err)
	}
	if !bytes.Equal(hdr[:4], archiveMagic) || hdr[4] != archiveVersion {
		return nil, bad("not an archive (bad magic or version)")
	}
	info := &ArchiveInfo{Path: path}
	copy(info.Journal[:], hdr[5:21])
	info.First = binary.BigEndian.Uint64(hdr[21:])
	info.Last = binary.BigEndian.Uint64(hdr[29:])
	copy(info.PrevHash[:], hdr[37:69])
	count := binary.BigEndian.Uint64(hdr[69:])
	if info.First == 0 || info.Last < info.First || count != info.Last-info.First+1 {
		return nil, bad("header says events %d..%d in %d records", info.First, info.Last, count)
	}
	prev := info.PrevHash
	var e Envelope
	var buf []byte
	for seq := info.First; seq <= info.Last; seq++ {
		var l [4]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return nil, bad("event %d: %v (the archive ends early)", seq, err)
		}
		n := binary.BigEndian.Uint32(l[:])
		if n > 64<<20 {
			return nil, bad("event %d: a record of %d bytes", seq, n)
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, bad("event %d: %v (the archive ends early)", seq, err)
		}
		if err := decodeInto(&e, buf, true); err != nil {
			return nil, bad("event %d: %v", seq, err)
		}
		switch {
		case e.Seq != seq:
			return nil, bad("event %d: stored as event %d", seq, e.Seq)
		case e.PrevHash != prev:
			return nil, bad("event %d: %v: its link (%x…) does not match the hash of event %d (%x…)", seq, ErrHashMismatch, e.PrevHash[:6], seq-1, prev[:6])
		}
		prev = e.Hash
		info.Events++
		if fn != nil {
			if err := fn(&e); err != nil {
				return nil, err
			}
		}
	}
	tr := make([]byte, 4+32)
	if _, err := io.ReadFull(r, tr); err != nil {
		return nil, bad("trailer: %v", err)
	}
	var digest [32]byte
	h.Sum(digest[:0])
	if !bytes.Equal(tr[:4], archiveTrailer) {
		return nil, bad("bad trailer")
	}
	copy(info.LastHash[:], tr[4:])
	if info.LastHash != prev {
		return nil, bad("trailer says the last event's hash is %x…, event %d has %x…", info.LastHash[:6], info.Last, prev[:6])
	}
	var stored [32]byte
	if _, err := io.ReadFull(br, stored[:]); err != nil {
		return nil, bad("trailer digest: %v", err)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return nil, bad("bytes after the trailer")
	}
	if stored != digest {
		return nil, bad("digest mismatch: the file's bytes hash to %x…, its trailer says %x…", digest[:6], stored[:6])
	}
	info.Hash = stored
	return info, nil
}

// VerifyArchives checks the archives ck names, in dir, as one chain from
// event 1 to the checkpoint: each file verifies on its own (VerifyArchive),
// has the digest, range and hashes ck recorded for it, belongs to ck's
// journal, starts where the one before ended (the first from sequence 1,
// linking to the zero hash) and the last ends at ck.Seq with ck.Hash. fn,
// when set, is called with every archived event in order. It returns what
// each archive said of itself.
func VerifyArchives(dir string, ck *Checkpoint, fn func(*Envelope) error) ([]*ArchiveInfo, error) {
	if ck == nil {
		return nil, errors.New("journal: the journal has no checkpoint: it was never compacted, so there are no archives to verify")
	}
	if len(ck.Archives) == 0 {
		return nil, fmt.Errorf("%w: checkpoint at %d names no archive", ErrArchive, ck.Seq)
	}
	var out []*ArchiveInfo
	next, prev := uint64(1), [32]byte{}
	for _, ref := range ck.Archives {
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%w: archive %s: %s", ErrArchive, ref.Name, fmt.Sprintf(format, args...))
		}
		if ref.First != next || ref.PrevHash != prev {
			return out, bad("the checkpoint records events %d..%d linking to %x…, the archive before ends at %d with %x…", ref.First, ref.Last, ref.PrevHash[:6], next-1, prev[:6])
		}
		info, err := VerifyArchive(filepath.Join(dir, ref.Name), fn)
		if err != nil {
			return out, err
		}
		out = append(out, info)
		switch {
		case info.Journal != ck.Journal:
			return out, bad("belongs to journal %s, the checkpoint to %s", info.Journal, ck.Journal)
		case info.First != ref.First || info.Last != ref.Last:
			return out, bad("holds events %d..%d, the checkpoint records %d..%d", info.First, info.Last, ref.First, ref.Last)
		case info.PrevHash != ref.PrevHash || info.LastHash != ref.LastHash:
			return out, bad("its first link or last hash differs from what the checkpoint recorded")
		case info.Hash != ref.Hash:
			return out, bad("digest %x…, the checkpoint recorded %x…: it is not the archive that was written", info.Hash[:6], ref.Hash[:6])
		}
		next, prev = info.Last+1, info.LastHash
	}
	if next-1 != ck.Seq || prev != ck.Hash {
		return out, fmt.Errorf("%w: the archives end at event %d with hash %x…, the checkpoint is at %d with %x…", ErrArchive, next-1, prev[:6], ck.Seq, ck.Hash[:6])
	}
	return out, nil
}
