package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
)

// The index's buckets and meta key (doc.go, "Indexes").
var (
	bucketIndex  = []byte("index")
	bucketStates = []byte("states")
	bucketTerms  = []byte("terms")
	keyIndex     = []byte("index")
)

// defaultIndexBatch is how many events one migration transaction indexes.
const defaultIndexBatch = 5000

// ErrNoIndex is returned by Postings and Terms while the index is not
// complete (IndexStatus().Ready is false): the caller scans instead.
var ErrNoIndex = errors.New("journal: index not ready")

// IndexStatus says whether the secondary index covers the whole journal.
type IndexStatus struct {
	// Ready: the index is of Version and covers every acknowledged event
	// but at most the last maxIndexLag, which reads scan; Postings and
	// Terms answer.
	Ready bool
	// Version is the IndexVersion the file's index is built with (the
	// one being built, during a migration).
	Version uint32
	// Through is the last sequence up to which every event is indexed
	// (Head once the indexer has caught up).
	Through uint64
}

// Indexed is what a journal answers beyond Store: lookups by sequence,
// time and id, the secondary index, and retained states. BoltStore and
// MemStore implement it; each method sees only acknowledged events (at or
// before Head), as Iterate does.
type Indexed interface {
	Store
	IndexStatus() IndexStatus
	Get(seq uint64) (*Envelope, error)
	Range(from, to uint64, reverse bool, fn func(*Envelope) error) error
	SeqAtTime(t time.Time) (uint64, error)
	SeqOfID(id ulid.ULID) (uint64, error)
	Postings(term string, from, to uint64, reverse bool, fn func(seq uint64) error) error
	Terms(prefix string, fn func(term string) error) error
	PutState(snap *Snapshot) error
	StateAtOrBefore(seq uint64) (*Snapshot, error)
}

var (
	_ Indexed = (*BoltStore)(nil)
	_ Indexed = (*MemStore)(nil)
)

// Built-in term prefixes: every event is indexed under its type and its
// cause's op.
const (
	TermType = "type:"
	TermOp   = "op:"
)

// eventTerms returns the terms of one event, sorted and without
// duplicates: the built-in ones, then what ix names. Terms that are empty
// or hold a 0x00 byte (the key separator) are left out.
func eventTerms(ix func(string, uint16, []byte) []string, typ string, ver uint16, op string, payload []byte) []string {
	terms := []string{TermType + typ, TermOp + op}
	if ix != nil {
		terms = append(terms, ix(typ, ver, payload)...)
	}
	terms = slices.DeleteFunc(terms, func(t string) bool { return t == "" || strings.IndexByte(t, 0) >= 0 })
	slices.Sort(terms)
	return slices.Compact(terms)
}

// safeTerms is eventTerms with a panic of the indexer turned into an
// error naming the event.
func safeTerms(ix func(string, uint16, []byte) []string, seq uint64, typ string, ver uint16, op string, payload []byte) (terms []string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("journal: indexer panicked on event %d (%s v%d): %v", seq, typ, ver, r)
		}
	}()
	return eventTerms(ix, typ, ver, op, payload), nil
}

// epochShift groups the index keys by blocks of 1024 sequences: a key
// starts with its block (the epoch), so the keys an indexer transaction
// adds fall on the few pages of the newest block instead of on one page
// per term all over the index; a term's postings are one seek per block.
const epochShift = 10

func epochOf(seq uint64) uint32 { return uint32(seq >> epochShift) }

// epochFirst is the first sequence of epoch ep.
func epochFirst(ep uint32) uint64 { return uint64(ep) << epochShift }

// postingKey is the index key of term for event seq: u32 big-endian epoch
// (seq >> epochShift), term, 0x00, u64 big-endian sequence. It is appended
// to buf.
func postingKey(buf []byte, term string, seq uint64) []byte {
	buf = binary.BigEndian.AppendUint32(buf, epochOf(seq))
	buf = append(buf, term...)
	buf = append(buf, 0)
	return binary.BigEndian.AppendUint64(buf, seq)
}

// splitPosting parses an index key; ok is false for one that is not.
func splitPosting(k []byte) (term []byte, seq uint64, ok bool) {
	if len(k) < 4+9 || k[len(k)-9] != 0 {
		return nil, 0, false
	}
	seq = binary.BigEndian.Uint64(k[len(k)-8:])
	if epochOf(seq) != binary.BigEndian.Uint32(k) {
		return nil, 0, false
	}
	return k[4 : len(k)-9], seq, true
}

// postingKeys appends the keys of one event's terms to keys, all in one
// new buffer (bbolt keeps keys until the transaction ends).
func postingKeys(keys [][]byte, terms []string, seq uint64) [][]byte {
	n := 0
	for _, t := range terms {
		n += 4 + len(t) + 9
	}
	buf := make([]byte, 0, n)
	for _, t := range terms {
		start := len(buf)
		buf = postingKey(buf, t, seq)
		keys = append(keys, buf[start:len(buf):len(buf)])
	}
	return keys
}

func sortKeys(keys [][]byte) { slices.SortFunc(keys, bytes.Compare) }

// indexRecord is the meta "index" value: u32 index version, u64 through.
type indexRecord struct {
	version uint32
	through uint64
}

func encodeIndexRecord(r indexRecord) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(nil, r.version), r.through)
}

func decodeIndexRecord(v []byte) (indexRecord, bool) {
	if len(v) != 12 {
		return indexRecord{}, false
	}
	return indexRecord{version: binary.BigEndian.Uint32(v), through: binary.BigEndian.Uint64(v[4:])}, true
}

// Envelope fields read in place (doc.go, "Envelope encoding"): the ULID at
// byte 1, the time at byte 25.
func envelopeID(v []byte) (ulid.ULID, bool) {
	var id ulid.ULID
	if len(v) < 33 || v[0] != formatVersion {
		return id, false
	}
	copy(id[:], v[1:17])
	return id, true
}

func envelopeTime(v []byte) (int64, bool) {
	if len(v) < 33 || v[0] != formatVersion {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(v[25:33])), true
}

// clampRange resolves [from, to] (to 0: head) against head; ok is false
// when it is empty.
func clampRange(from, to, head uint64) (uint64, uint64, bool) {
	if to == 0 || to > head {
		to = head
	}
	if from == 0 {
		from = 1
	}
	return from, to, from <= to
}
