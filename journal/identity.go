package journal

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"
)

// ID identifies one journal: 16 random bytes written when the journal is
// created, carried by its snapshots and (through the daemon) by the
// ownership marks of the kernel objects its decisions made, so that a fresh
// or foreign journal can neither adopt nor delete another journal's objects.
type ID [16]byte

// NewID returns a random ID.
func NewID() ID {
	var id ID
	if _, err := rand.Read(id[:]); err != nil {
		panic("journal: no randomness: " + err.Error())
	}
	return id
}

// IsZero reports whether id is unset (a snapshot written before ids).
func (id ID) IsZero() bool { return id == ID{} }

// String is the id in 32 lowercase hex digits.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short is the first 12 hex digits: enough to tell journals apart in a
// kernel object's mark.
func (id ID) Short() string { return id.String()[:12] }

// ParseID parses the String form.
func ParseID(s string) (ID, error) {
	var id ID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, errors.New("journal: not a journal id: " + s)
	}
	copy(id[:], b)
	return id, nil
}

// Identity describes the journal a store opened.
type Identity struct {
	ID ID
	// Legacy is set when the id was assigned to a journal that already
	// held events written before journals had ids: kernel objects marked
	// without an id may be this journal's.
	Legacy bool
	// Fresh is set when this open created the journal, or found its file
	// empty (0 bytes): it has no history at all.
	Fresh bool
}

// Health says whether the journal accepts writes.
type Health struct {
	// Err is the failure that made the journal read-only (nil: writable).
	Err error
	// Since is when it happened.
	Since time.Time
}

// OK reports whether writes are accepted.
func (h Health) OK() bool { return h.Err == nil }

// ErrReadOnly wraps the cause of a failed write: the journal refuses
// appends until Recover succeeds.
var ErrReadOnly = errors.New("journal: read-only after a failed write")

// ErrDamaged is returned when the file's own structure is unreadable
// (bbolt pages that fail their checks, a file shorter than its pages).
var ErrDamaged = errors.New("journal: file damaged")

// Failpoint, when set (test builds with the failpoints tag), is called at
// named crash windows: "journal/before-commit" (events put in the
// transaction, nothing written or synced), "journal/after-commit" (synced,
// not yet resolved), "journal/snapshot-write" (half of a snapshot's
// temporary file written).
var Failpoint func(name string)

func hit(name string) {
	if Failpoint != nil {
		Failpoint(name)
	}
}
