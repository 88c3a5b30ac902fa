package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Iterate calls fn for each acknowledged event with Seq > after, in order.
// Events past Head (a commit that failed but reached the file) are never
// returned. Damage met on the way ends the walk with an error wrapping
// ErrDamaged that names the page; fn's own panics propagate.
func (s *BoltStore) Iterate(after uint64, verify bool, fn func(*Envelope) error) error {
	head, _ := s.Head()
	if after >= head {
		return nil
	}
	ck := s.Checkpoint()
	if ck != nil && after < ck.Seq {
		after = ck.Seq // the events before are in the archives
	}
	var userErr error // fn's own error, returned as it is
	err := s.view("read events", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		var prev [32]byte
		if ck != nil && after == ck.Seq {
			prev = ck.Hash
		} else if after > 0 {
			if v := b.Get(seqKey(after)); v != nil {
				e, err := decodeEnvelope(v, false)
				if err != nil {
					return fmt.Errorf("event %d: %w", after, err)
				}
				prev = e.Hash
			} else if verify {
				return fmt.Errorf("event %d: %w", after, ErrNotFound)
			}
		}
		want := after + 1
		var e Envelope
		for k, v := c.Seek(seqKey(after + 1)); k != nil; k, v = c.Next() {
			if len(k) != 8 {
				return fmt.Errorf("event %d: %w: stored under a key of %d bytes (%x…), not a sequence number", want, ErrMalformed, len(k), k[:min(len(k), 12)])
			}
			seq := binary.BigEndian.Uint64(k)
			if seq > head {
				break
			}
			if err := decodeInto(&e, v, verify); err != nil {
				return fmt.Errorf("event %d: %w", seq, err)
			}
			if verify {
				if seq != want || e.Seq != seq {
					return fmt.Errorf("event %d: %w: expected sequence %d", seq, ErrHashMismatch, want)
				}
				if e.PrevHash != prev {
					return fmt.Errorf("event %d (%s): %w: link to event %d broken", seq, e.ID, ErrHashMismatch, seq-1)
				}
			}
			prev = e.Hash
			want++
			if err := callUser(fn, &e); err != nil {
				userErr = err
				return err
			}
		}
		if verify && want <= head {
			return fmt.Errorf("events %d..%d: %w: missing (the journal's head is %d)", want, head, ErrNotFound, head)
		}
		return nil
	})
	if err == nil || err == userErr || IsDamage(err) || errors.Is(err, ErrClosed) {
		return err
	}
	return fmt.Errorf("journal %s: %w", s.path, err)
}

// HashAt returns the hash of acknowledged event seq.
func (s *BoltStore) HashAt(seq uint64) ([32]byte, error) {
	var h [32]byte
	if head, _ := s.Head(); seq == 0 || seq > head {
		return h, ErrNotFound
	}
	if ck := s.Checkpoint(); ck != nil && seq <= ck.Seq {
		if seq == ck.Seq {
			return ck.Hash, nil
		}
		return h, ck.compactedErr(seq)
	}
	err := s.view("read an event", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		if b == nil {
			return ErrNotFound
		}
		v := b.Get(seqKey(seq))
		if v == nil {
			return ErrNotFound
		}
		e, err := decodeEnvelope(v, false)
		if err != nil {
			return fmt.Errorf("event %d: %w", seq, err)
		}
		h = e.Hash
		return nil
	})
	return h, err
}

// pageCheckReuse is how long Verify trusts a page check that passed: the
// check holds commits back while it runs (0.5 s on a journal of 1M
// events), and a client that asks for verify after verify must not stall
// the daemon's writes. Damage in the pages the chain walk reads is still
// found by the walk.
const pageCheckReuse = 10 * time.Second

// Verify checks the file's pages (Check, unless one passed in the last
// pageCheckReuse) and the whole chain up to Head, and reports every
// problem found: page damage as problems at sequence 0. It fails only when
// the store cannot be read at all (closed).
func (s *BoltStore) Verify() (*Report, error) {
	v := newVerifier()
	var pageProblems []Problem
	s.mu.Lock()
	recent := !s.checkedOK.IsZero() && time.Since(s.checkedOK) < pageCheckReuse
	s.mu.Unlock()
	if recent {
		// the page check that passed moments ago stands
	} else if err := s.Check(); err != nil {
		var d *DamageError
		switch {
		case errors.As(err, &d) && len(d.Problems) > 0:
			for _, p := range d.Problems {
				pageProblems = append(pageProblems, Problem{Err: "page check: " + p})
			}
		case errors.Is(err, ErrClosed):
			return nil, err
		default:
			pageProblems = append(pageProblems, Problem{Err: "page check: " + err.Error()})
		}
	}
	head, _ := s.Head()
	ck := s.Checkpoint()
	v.fromCheckpoint(ck)
	err := s.view("verify", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, raw := c.First(); k != nil; k, raw = c.Next() {
			if len(k) != 8 {
				v.r.Problems = append(v.r.Problems, Problem{Err: fmt.Sprintf("key %x is not a sequence number", k)})
				continue
			}
			seq := binary.BigEndian.Uint64(k)
			if seq > head {
				break
			}
			v.check(seq, raw)
		}
		return nil
	})
	switch {
	case errors.Is(err, ErrClosed):
		return nil, err
	case err != nil:
		v.r.Problems = append(v.r.Problems, Problem{Seq: v.r.LastSeq + 1, Err: "reading events: " + err.Error()})
	}
	r := v.report()
	if r.LastSeq < head && err == nil {
		r.Problems = append(r.Problems, Problem{Seq: r.LastSeq + 1,
			Err: fmt.Sprintf("events %d..%d are missing (the journal's head is %d)", r.LastSeq+1, head, head)})
	}
	r.Problems = append(pageProblems, r.Problems...)
	return r, nil
}

// Check runs the page check: a walk of the file's whole tree (every
// reachable page inside the file, of the right type and id, its elements
// inside it, no loops), then bbolt's own consistency check (Tx.Check:
// pages reachable or free, each once, keys in order). It returns nil, or a
// *DamageError (wrapping ErrDamaged) whose Problems name the pages. A meta
// page that fails its checksum (the file is read as of the transaction
// before) is reported too.
//
// While it runs, commits wait (bbolt's check must not race a writer). Its
// cost grows with the file: see the note in doc.go.
func (s *BoltStore) Check() error {
	// The writer's lock first, as the writer and Recover take them.
	if !s.opt.ReadOnly {
		s.wmu.Lock()
		defer s.wmu.Unlock()
	}
	h, err := s.acquire()
	if err != nil {
		return err
	}
	defer s.release(h)
	warnings, problems, err := s.checkOn(h)
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		// Writing on into a damaged file could spread the damage (a page
		// freed twice is handed out twice): writes stop.
		d := &DamageError{Path: s.path, Op: "page check", Page: pageOf(problems[0]), Msg: joinProblems(problems), Problems: problems}
		s.fail(d, true)
	}
	if all := append(warnings, problems...); len(all) > 0 {
		return &DamageError{Path: s.path, Op: "page check", Page: pageOf(all[0]), Msg: joinProblems(all), Problems: all}
	}
	s.mu.Lock()
	s.checkedOK = time.Now()
	s.mu.Unlock()
	return nil
}

// checkOn runs the page check on h: the layout's warnings (a meta page
// that fails its checks: the file is read as of the transaction before)
// and the problems found.
func (s *BoltStore) checkOn(h *handle) (warnings, problems []string, err error) {
	l, walk, err := checkPath(s.path, true)
	if err != nil {
		return nil, nil, fmt.Errorf("journal: page check of %s: %w", s.path, err)
	}
	if l != nil {
		warnings = l.warnings
	}
	if len(walk) > 0 {
		return warnings, walk, nil // bbolt's check would read the damage unguarded
	}
	// Tx.Check runs in a goroutine of its own, where a fault could not be
	// recovered: the walk above has shown that every page it will read
	// lies inside the file.
	err = s.viewOn(h, "page check", func(tx *bolt.Tx) error {
		for e := range tx.Check() {
			if len(problems) < maxProblems {
				problems = append(problems, e.Error())
			}
		}
		return nil
	})
	if err != nil {
		problems = append(problems, err.Error())
	}
	return warnings, problems, nil
}
