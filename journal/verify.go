package journal

import (
	"errors"
	"fmt"

	"github.com/oklog/ulid/v2"
)

// Problem is one event that does not check out.
type Problem struct {
	Seq uint64 `json:"seq"`
	ID  string `json:"id,omitempty"`
	Err string `json:"error"`
}

// Report is the result of Verify.
type Report struct {
	// CheckpointSeq is the checkpoint the chain was proved from (0: the
	// journal was never compacted, the chain starts at event 1).
	CheckpointSeq uint64    `json:"checkpoint_seq,omitempty"`
	Events        uint64    `json:"events"`
	FirstSeq      uint64    `json:"first_seq"`
	LastSeq       uint64    `json:"last_seq"`
	HeadHash      string    `json:"head_hash"`
	Problems      []Problem `json:"problems,omitempty"`
}

// OK reports whether the chain verified.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Err summarises the report as an error naming the first bad event.
func (r *Report) Err() error {
	if r.OK() {
		return nil
	}
	p := r.Problems[0]
	return fmt.Errorf("journal: event %d (%s): %s; %d problem(s) in all", p.Seq, p.ID, p.Err, len(r.Problems))
}

type verifier struct {
	r        Report
	prevHash [32]byte
	prevSeq  uint64
	prevID   ulid.ULID
	haveLast bool
	start    uint64 // the checkpoint's sequence (0: none)
	e        Envelope
}

// fromCheckpoint makes the chain start after ck (nil: at event 1), and
// reports a checkpoint whose own hashes do not check out.
func (v *verifier) fromCheckpoint(ck *Checkpoint) {
	if ck == nil {
		return
	}
	v.start, v.prevSeq, v.prevHash, v.prevID = ck.Seq, ck.Seq, ck.Hash, ck.LastID
	v.r.CheckpointSeq = ck.Seq
	v.r.HeadHash = fmt.Sprintf("%x", ck.Hash)
	if err := ck.CheckIntegrity(); err != nil {
		v.r.Problems = append(v.r.Problems, Problem{Seq: ck.Seq, Err: err.Error()})
	}
}

func newVerifier() *verifier { return &verifier{} }

// check verifies the envelope stored under key seq.
func (v *verifier) check(seq uint64, raw []byte) {
	v.r.Events++
	if v.r.FirstSeq == 0 {
		v.r.FirstSeq = seq
	}
	v.r.LastSeq = seq
	e := &v.e
	err := decodeInto(e, raw, true)
	id := ""
	if err == nil || errors.Is(err, ErrHashMismatch) {
		id = e.ID.String()
	}
	bad := func(msg string) {
		v.r.Problems = append(v.r.Problems, Problem{Seq: seq, ID: id, Err: msg})
	}
	switch {
	case err != nil:
		bad(err.Error())
	case e.Seq != seq:
		bad(fmt.Sprintf("stored under sequence %d but says %d", seq, e.Seq))
	case e.PrevHash != v.prevHash:
		bad(fmt.Sprintf("%v: its link (%x…) does not match the hash of event %d (%x…)", ErrHashMismatch, e.PrevHash[:6], v.prevSeq, v.prevHash[:6]))
	case (v.haveLast || v.start != 0) && e.ID.Compare(v.prevID) <= 0:
		bad(fmt.Sprintf("id %s does not sort after the previous event's %s", e.ID, v.prevID))
	}
	if (v.haveLast || v.start != 0) && seq != v.prevSeq+1 {
		bad(fmt.Sprintf("gap: the previous event is %d", v.prevSeq))
	}
	if v.prevSeq == 0 && !v.haveLast && seq != 1 && v.start == 0 {
		bad("the journal does not start at sequence 1")
	}
	// Continue the chain from what is stored, so one bad event is reported
	// once rather than breaking every later link too.
	v.prevHash = e.Hash
	v.prevSeq = seq
	v.prevID = e.ID
	v.haveLast = true
}

func (v *verifier) report() *Report {
	if v.start != 0 && v.r.Events == 0 {
		v.r.LastSeq = v.start // compacted up to its head
	}
	if v.haveLast {
		v.r.HeadHash = fmt.Sprintf("%x", v.prevHash)
	}
	return &v.r
}
