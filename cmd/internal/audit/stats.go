package audit

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/zlayer/overlayd/journal"
)

// Stats counts a journal's events and their bytes (the encoded envelope's
// size: what the event costs in the file, before bbolt's own overhead).
type Stats struct {
	Events   uint64  `json:"events"`
	Bytes    uint64  `json:"bytes"`
	FirstSeq uint64  `json:"first_seq"`
	LastSeq  uint64  `json:"last_seq"`
	First    string  `json:"first_time,omitempty"`
	Last     string  `json:"last_time,omitempty"`
	ByType   []Count `json:"by_type"`
	ByOp     []Count `json:"by_op"`
	ByDay    []Count `json:"by_day"`
}

// Count is one row of Stats: a key (a type, an op or a UTC day), how many
// events and how many bytes.
type Count struct {
	Key    string `json:"key"`
	Events uint64 `json:"events"`
	Bytes  uint64 `json:"bytes"`
}

// Stats implements Querier: one pass over the journal.
func (l *Local) Stats(ctx context.Context) (*Stats, error) {
	byType, byOp, byDay := map[string]*Count{}, map[string]*Count{}, map[string]*Count{}
	var s Stats
	add := func(m map[string]*Count, k string, n uint64) {
		c := m[k]
		if c == nil {
			c = &Count{Key: k}
			m[k] = c
		}
		c.Events++
		c.Bytes += n
	}
	var first, last time.Time
	err := l.r.rng(1, 0, false, func(e *journal.Envelope) error {
		if s.Events%65536 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		n := uint64(len(e.Encode()))
		s.Events++
		s.Bytes += n
		if s.FirstSeq == 0 {
			s.FirstSeq, first = e.Seq, e.Time
		}
		s.LastSeq, last = e.Seq, e.Time
		add(byType, e.Type, n)
		add(byOp, e.Cause.Op, n)
		add(byDay, e.Time.UTC().Format("2006-01-02"), n)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if s.Events > 0 {
		s.First, s.Last = first.UTC().Format(time.RFC3339), last.UTC().Format(time.RFC3339)
	}
	s.ByType, s.ByOp, s.ByDay = rows(byType, true), rows(byOp, true), rows(byDay, false)
	return &s, nil
}

// rows sorts by count (most first, then key) or by key.
func rows(m map[string]*Count, byCount bool) []Count {
	out := make([]Count, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, *m[k])
	}
	if byCount {
		slices.SortStableFunc(out, func(a, b Count) int {
			switch {
			case a.Events > b.Events:
				return -1
			case a.Events < b.Events:
				return 1
			}
			return 0
		})
	}
	return out
}
