package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"
)

// Salvage is what could be read from a journal file, whatever its state
// (SalvageFile).
type Salvage struct {
	// ID is the journal's id, when one was found (IDFound).
	ID      ID
	IDFound bool
	Legacy  bool
	// Chain holds the envelopes, exactly as stored, of the longest hash
	// chain from sequence 1 that could be read: Chain[i] is event i+1, its
	// own hash checks out and it links to the one before.
	Chain [][]byte
	// Highest is the highest sequence number seen anywhere in the file:
	// an envelope (damaged or not) stored under its own sequence, or the
	// journal's head record. Events of failed commits (recorded as
	// discarded by Recover) do not count.
	Highest uint64
	// Beyond lists the events past Chain that could still be read (their
	// type is known), by sequence; an event whose bytes are damaged is
	// listed with HashOK false.
	Beyond []Found
	// Damage describes what was found wrong: bbolt could not open or
	// read the file, the page check's problems, chains that do not link.
	Damage []string
	// TreeEvents counts the events read through bbolt's own tree (0 when
	// bbolt could not read the file); the others came from the page scan.
	TreeEvents uint64
	// TreeIntact: bbolt's tree holds exactly Chain, every event verifying
	// (nothing needs repair).
	TreeIntact bool
	// Discarded counts envelopes left out because they belong to commits
	// that failed (they were answered as failed).
	Discarded int
	// Checkpoint is the checkpoint of a compacted journal, when one was
	// found (the newest, if several): the chain then starts after it, not
	// at sequence 1, and Chain, which is built from sequence 1, does not
	// hold its events (cmd/internal/replay.Repair refuses such a file).
	Checkpoint *Checkpoint
}

// Found is an event found past the salvaged chain.
type Found struct {
	Seq    uint64
	Type   string
	Hash   [32]byte
	HashOK bool
}

// LastSeq is the sequence of the last salvaged event.
func (s *Salvage) LastSeq() uint64 { return uint64(len(s.Chain)) }

type candidate struct {
	raw      []byte
	seq      uint64
	hash     [32]byte
	prev     [32]byte
	id       ulid.ULID
	typ      string
	hashOK   bool
	fromTree bool
}

// discardMark is one entry of the meta "discarded" record: a commit that
// failed, from its first to its last event.
type discardMark struct {
	firstSeq  uint64
	firstHash [32]byte
	lastSeq   uint64
	lastHash  [32]byte
}

const discardMarkSize = 8 + 32 + 8 + 32

func decodeDiscarded(v []byte) []discardMark {
	var out []discardMark
	for len(v) >= discardMarkSize {
		var m discardMark
		m.firstSeq = binary.BigEndian.Uint64(v)
		copy(m.firstHash[:], v[8:40])
		m.lastSeq = binary.BigEndian.Uint64(v[40:])
		copy(m.lastHash[:], v[48:80])
		out = append(out, m)
		v = v[discardMarkSize:]
	}
	return out
}

func encodeDiscarded(ms []discardMark) []byte {
	var b []byte
	for _, m := range ms {
		b = binary.BigEndian.AppendUint64(b, m.firstSeq)
		b = append(b, m.firstHash[:]...)
		b = binary.BigEndian.AppendUint64(b, m.lastSeq)
		b = append(b, m.lastHash[:]...)
	}
	return b
}

// salvager gathers what a file holds.
type salvager struct {
	out      *Salvage
	cands    map[uint64][]*candidate
	ids      map[ID]int
	legacy   bool
	heads    []headRecord
	discards map[discardMark]bool
}

// SalvageFile reads every event it can from the journal file at path,
// trusting neither bbolt's structure nor the file's integrity: first
// through bbolt (when the file opens), then by scanning every page of the
// raw file for bbolt leaf pages and taking each 8-byte key whose value is
// an envelope of that sequence with a valid own hash. It keeps the longest
// chain from sequence 1 in which each event links to the one before
// (preferring, at a fork, events of bbolt's live tree, then the later
// id), and reports what lies beyond it. The file is only read; it must
// not be open for writing (repair works on a copy).
func SalvageFile(path string) (*Salvage, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("journal: salvage %s: %w", path, err)
	}
	sv := &salvager{out: &Salvage{}, cands: map[uint64][]*candidate{}, ids: map[ID]int{}, discards: map[discardMark]bool{}}
	if len(data) == 0 {
		sv.out.Damage = append(sv.out.Damage, fmt.Sprintf("%s is empty (0 bytes)", path))
		return sv.out, nil
	}
	sv.readTree(path)
	sv.scan(data)
	sv.build()
	return sv.out, nil
}

// readTree reads the events through bbolt, when the file opens.
func (sv *salvager) readTree(path string) {
	s, err := OpenFile(path, Options{ReadOnly: true, LockTimeout: 100 * time.Millisecond})
	if err != nil {
		sv.out.Damage = append(sv.out.Damage, "bbolt cannot open the file: "+err.Error())
		return
	}
	defer s.Close()
	if err := s.Check(); err != nil {
		sv.out.Damage = append(sv.out.Damage, err.Error())
	}
	err = s.view("salvage", func(tx *bolt.Tx) error {
		if m := tx.Bucket(bucketMeta); m != nil {
			sv.meta(m.Get, true)
		}
		b := tx.Bucket(bucketEvents)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if sv.event(k, v, true) {
				sv.out.TreeEvents++
			}
		}
		return nil
	})
	if err != nil {
		sv.out.Damage = append(sv.out.Damage, "reading the events through bbolt: "+err.Error())
	}
}

// meta takes the journal's meta values through get.
func (sv *salvager) meta(get func([]byte) []byte, live bool) {
	if v := get(keyID); len(v) == 16 {
		var id ID
		copy(id[:], v)
		n := 1
		if live {
			n = 1 << 20 // the live tree's id wins over stale copies
		}
		sv.ids[id] += n
	}
	if get(keyLegacy) != nil {
		sv.legacy = true
	}
	if h := decodeHead(get(keyHead)); h != nil {
		sv.heads = append(sv.heads, *h)
	}
	for _, m := range decodeDiscarded(get(keyDiscarded)) {
		sv.discards[m] = true
	}
	if v := get(keyCheckpoint); v != nil {
		if ck, err := decodeCheckpoint(v); err == nil && (sv.out.Checkpoint == nil || ck.Seq > sv.out.Checkpoint.Seq) {
			sv.out.Checkpoint = ck
		} else if err != nil && sv.out.Checkpoint == nil {
			sv.out.Checkpoint = &Checkpoint{} // one was there, unreadable
		}
	}
}

// event takes one key and value; it reports whether it was an envelope.
func (sv *salvager) event(k, v []byte, fromTree bool) bool {
	if len(k) != 8 {
		return false
	}
	// One decode: a hash mismatch is reported once every field is read.
	var e Envelope
	err := decodeInto(&e, v, true)
	if (err != nil && !errors.Is(err, ErrHashMismatch)) || e.Seq == 0 {
		return false
	}
	hashOK := err == nil
	// An envelope whose own hash checks out says which event it is (its
	// sequence is hashed), whatever key it is stored under; one that does
	// not counts only where the key agrees with it.
	if !hashOK && e.Seq != binary.BigEndian.Uint64(k) {
		return false
	}
	seq := e.Seq
	c := &candidate{seq: seq, hash: e.Hash, prev: e.PrevHash, id: e.ID, typ: e.Type, fromTree: fromTree, hashOK: hashOK}
	for _, o := range sv.cands[seq] {
		if o.hash == c.hash && o.hashOK == c.hashOK && bytes.Equal(o.raw, v) {
			o.fromTree = o.fromTree || fromTree
			return true
		}
	}
	c.raw = append([]byte(nil), v...)
	sv.cands[seq] = append(sv.cands[seq], c)
	return true
}

// scan reads every page of data as a possible bbolt leaf page.
func (sv *salvager) scan(data []byte) {
	ps := 4096
	if l, err := readLayout(bytes.NewReader(data), int64(len(data))); err == nil {
		ps = l.pageSize
	} else if p := os.Getpagesize(); p >= 512 {
		ps = p
	}
	for off := 0; off+pageHeaderSize <= len(data); off += ps {
		h := readPageHeader(data[off:])
		if h.flags != pageLeaf || h.count == 0 {
			continue
		}
		end := off + (int(h.overflow)+1)*ps
		if end > len(data) || end < off {
			end = len(data)
		}
		sv.leaf(data[off:end], h, 0)
	}
}

func (sv *salvager) leaf(page []byte, h pageHeader, depth int) {
	elems, _ := leafElems(page, h) // the elements inside the page, up to the first bad one
	for _, e := range elems {
		switch {
		case e.flags&leafBucket != 0:
			if depth < 4 && len(e.value) >= bucketHeaderSize+pageHeaderSize && ne.Uint64(e.value) == 0 {
				inline := e.value[bucketHeaderSize:]
				if ih := readPageHeader(inline); ih.flags == pageLeaf {
					sv.leaf(inline, ih, depth+1)
				}
			}
		case len(e.key) == 8:
			sv.event(e.key, e.value, false)
		default:
			sv.meta(func(k []byte) []byte {
				if bytes.Equal(k, e.key) {
					return e.value
				}
				return nil
			}, false)
		}
	}
}

// build picks the chain and describes the rest.
func (sv *salvager) build() {
	out := sv.out
	best, n := ID{}, 0
	for id, c := range sv.ids {
		if c > n || (c == n && bytes.Compare(id[:], best[:]) > 0) {
			best, n = id, c
		}
	}
	if n > 0 {
		out.ID, out.IDFound = best, true
	}
	if len(sv.ids) > 1 {
		out.Damage = append(out.Damage, fmt.Sprintf("%d different journal ids found in the file; using %s", len(sv.ids), best))
	}
	out.Legacy = sv.legacy

	// Leave out the events of failed commits: the first event of each
	// (recorded by Recover) and everything that links to it.
	excluded := map[[32]byte]bool{}
	for m := range sv.discards {
		for _, c := range sv.cands[m.firstSeq] {
			if c.hash == m.firstHash {
				excluded[c.hash] = true
			}
		}
	}
	seqs := make([]uint64, 0, len(sv.cands))
	for seq := range sv.cands {
		seqs = append(seqs, seq)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	if len(excluded) > 0 {
		for _, seq := range seqs {
			keep := sv.cands[seq][:0]
			for _, c := range sv.cands[seq] {
				if excluded[c.hash] || excluded[c.prev] {
					excluded[c.hash] = true
					out.Discarded++
					continue
				}
				keep = append(keep, c)
			}
			sv.cands[seq] = keep
		}
	}
	for _, seq := range seqs {
		if len(sv.cands[seq]) > 0 && seq > out.Highest {
			out.Highest = seq
		}
	}
	for _, h := range sv.heads {
		discarded := false
		for m := range sv.discards {
			if h.seq == m.lastSeq && h.hash == m.lastHash {
				discarded = true
			}
		}
		if !discarded && h.seq > out.Highest {
			out.Highest = h.seq
		}
	}

	// The longest chain: length[c] = 1 + the longest continuation of c.
	length := map[*candidate]uint64{}
	for i := len(seqs) - 1; i >= 0; i-- {
		seq := seqs[i]
		for _, c := range sv.cands[seq] {
			if !c.hashOK {
				continue
			}
			l := uint64(1)
			for _, n := range sv.cands[seq+1] {
				if n.hashOK && n.prev == c.hash && length[n]+1 > l {
					l = length[n] + 1
				}
			}
			length[c] = l
		}
	}
	better := func(a, b *candidate) bool { // is a a better pick than b?
		switch {
		case b == nil:
			return true
		case length[a] != length[b]:
			return length[a] > length[b]
		case a.fromTree != b.fromTree:
			return a.fromTree
		}
		return a.id.Compare(b.id) > 0
	}
	var prev [32]byte
	for seq := uint64(1); ; seq++ {
		var pick *candidate
		forks := 0
		for _, c := range sv.cands[seq] {
			if c.hashOK && c.prev == prev {
				forks++
				if better(c, pick) {
					pick = c
				}
			}
		}
		if pick == nil {
			break
		}
		if forks > 1 {
			out.Damage = append(out.Damage, fmt.Sprintf("event %d: %d different events link to event %d; kept %s", seq, forks, seq-1, pick.id))
		}
		out.Chain = append(out.Chain, pick.raw)
		prev = pick.hash
	}
	last := uint64(len(out.Chain))
	out.TreeIntact = out.TreeEvents == last
	for seq := uint64(1); seq <= last && out.TreeIntact; seq++ {
		for _, c := range sv.cands[seq] {
			if c.fromTree && c.raw != nil && !bytes.Equal(c.raw, out.Chain[seq-1]) {
				out.TreeIntact = false
				why := "does not verify"
				if c.hashOK {
					why = "is not the one that links"
				}
				out.Damage = append(out.Damage, fmt.Sprintf("event %d in bbolt's tree %s; an intact copy was found in another page", seq, why))
			}
		}
	}
	if next := sv.cands[last+1]; len(next) > 0 && last < out.Highest {
		why := "its own hash does not match its content"
		for _, c := range next {
			if c.hashOK {
				why = "it does not link to event " + fmt.Sprint(last)
			}
		}
		out.Damage = append(out.Damage, fmt.Sprintf("event %d: %s", last+1, why))
	}
	for _, seq := range seqs {
		if seq <= last {
			continue
		}
		var pick *candidate
		for _, c := range sv.cands[seq] {
			if pick == nil || (c.hashOK && !pick.hashOK) {
				pick = c
			}
		}
		if pick != nil {
			out.Beyond = append(out.Beyond, Found{Seq: seq, Type: pick.typ, Hash: pick.hash, HashOK: pick.hashOK})
		}
	}
}
