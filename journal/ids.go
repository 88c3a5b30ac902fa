package journal

import (
	"crypto/rand"
	"io"
	"time"

	"github.com/oklog/ulid/v2"
)

// idSource hands out ULIDs that increase strictly with the sequence number,
// even if the wall clock steps backwards. Not safe for concurrent use.
type idSource struct {
	entropy *ulid.MonotonicEntropy
	last    ulid.ULID
	lastMS  uint64
	clock   func() time.Time // nil: time.Now
	random  io.Reader        // nil: crypto/rand
}

func (s *idSource) now() time.Time {
	if s.clock != nil {
		return s.clock()
	}
	return time.Now()
}

func (s *idSource) next(t time.Time) ulid.ULID {
	if s.entropy == nil {
		r := s.random
		if r == nil {
			r = rand.Reader
		}
		s.entropy = ulid.Monotonic(r, 0)
	}
	ms := ulid.Timestamp(t)
	if ms < s.lastMS {
		ms = s.lastMS // clock stepped back: keep the order
	}
	id, err := ulid.New(ms, s.entropy)
	if err != nil || id.Compare(s.last) <= 0 {
		// Entropy overflow within one millisecond: move to the next one.
		ms++
		id = ulid.MustNew(ms, s.entropy)
	}
	s.last, s.lastMS = id, ms
	return id
}

// seed makes the source continue after an existing last ID.
func (s *idSource) seed(last ulid.ULID) {
	s.last = last
	s.lastMS = last.Time()
}
