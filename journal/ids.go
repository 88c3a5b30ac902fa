package journal

import (
	"crypto/rand"
	"time"

	"github.com/oklog/ulid/v2"
)

// idSource hands out ULIDs that increase strictly with the sequence number,
// even if the wall clock steps backwards. Not safe for concurrent use.
type idSource struct {
	entropy *ulid.MonotonicEntropy
	last    ulid.ULID
	lastMS  uint64
}

func (s *idSource) now() time.Time { return time.Now() }

func (s *idSource) next(t time.Time) ulid.ULID {
	if s.entropy == nil {
		s.entropy = ulid.Monotonic(rand.Reader, 0)
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
