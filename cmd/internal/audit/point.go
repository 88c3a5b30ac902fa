package audit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
)

// Point is a point of the journal as an operator names it: a sequence
// number, an RFC 3339 time (or a date), a ULID, or "head".
type Point struct {
	Text string
	Kind PointKind
	Seq  uint64
	Time time.Time
	ID   ulid.ULID
}

// PointKind says how a Point was given.
type PointKind int

const (
	PointSeq PointKind = iota + 1
	PointTime
	PointID
	PointHead
)

// ErrBadPoint is returned by ParsePoint.
var ErrBadPoint = errors.New("not a journal point")

// ParsePoint reads a sequence ("1200"), a time ("2026-12-01T14:00:00Z",
// "2026-12-01T14:00:00+01:00", "2026-12-01" for its midnight UTC), a ULID
// (26 characters, as `journal ls` prints ids) or "head".
func ParsePoint(s string) (Point, error) {
	s = strings.TrimSpace(s)
	p := Point{Text: s}
	switch {
	case s == "":
		return p, fmt.Errorf("%w: empty (want a sequence number, an RFC 3339 time or a ULID)", ErrBadPoint)
	case s == "head":
		p.Kind = PointHead
		return p, nil
	}
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		p.Kind, p.Seq = PointSeq, n
		return p, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		p.Kind, p.Time = PointTime, t
		return p, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		p.Kind, p.Time = PointTime, t
		return p, nil
	}
	if len(s) == ulid.EncodedSize {
		if id, err := ulid.ParseStrict(strings.ToUpper(s)); err == nil {
			p.Kind, p.ID = PointID, id
			return p, nil
		}
	}
	return p, fmt.Errorf("%w: %q (want a sequence number like 1200, an RFC 3339 time like 2026-12-01T14:00:00Z, a date, a 26-character ULID, or head)", ErrBadPoint, s)
}

func (p Point) String() string {
	if p.Text != "" {
		return p.Text
	}
	switch p.Kind {
	case PointSeq:
		return strconv.FormatUint(p.Seq, 10)
	case PointTime:
		return p.Time.UTC().Format(time.RFC3339Nano)
	case PointID:
		return p.ID.String()
	case PointHead:
		return "head"
	}
	return ""
}
