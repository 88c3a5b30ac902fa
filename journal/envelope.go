package journal

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"
)

const formatVersion = 1

const (
	flagIgnorable = 1 << 0
	flagPeerCred  = 1 << 1
	flagExe       = 1 << 2 // the cause carries the caller's executable (Cause.Exe)

	knownFlags = flagIgnorable | flagPeerCred | flagExe
)

// Cause records why an event was written.
type Cause struct {
	Op        string `json:"op"`
	RequestID uint64 `json:"request_id,omitempty"`
	// HasPeer is set when UID and PID come from the socket's SO_PEERCRED.
	HasPeer bool   `json:"has_peer,omitempty"`
	UID     uint32 `json:"uid,omitempty"`
	PID     uint32 `json:"pid,omitempty"`
	// Exe is the caller's executable path (/proc/PID/exe when the request
	// was read); "" when unknown, and in envelopes written before it.
	Exe string `json:"exe,omitempty"`
}

// Record is an event to append.
type Record struct {
	Type      string
	Version   uint16
	Ignorable bool
	Cause     Cause
	Payload   []byte
}

// Envelope is a stored event.
type Envelope struct {
	ID        ulid.ULID
	Seq       uint64
	Time      time.Time
	Type      string
	Version   uint16
	Ignorable bool
	Cause     Cause
	// Payload may alias storage that is only valid during the callback that
	// received the envelope; copy it to keep it.
	Payload  []byte
	PrevHash [32]byte
	Hash     [32]byte
}

// ErrMalformed is returned for bytes that are not an envelope.
var ErrMalformed = errors.New("journal: malformed envelope")

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// encode serialises e and fills e.Hash.
func (e *Envelope) encode(buf []byte) []byte {
	b := append(buf[:0], formatVersion)
	b = append(b, e.ID[:]...)
	b = binary.BigEndian.AppendUint64(b, e.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time.UnixNano()))
	b = binary.BigEndian.AppendUint16(b, e.Version)
	var flags byte
	if e.Ignorable {
		flags |= flagIgnorable
	}
	if e.Cause.HasPeer {
		flags |= flagPeerCred
	}
	if e.Cause.Exe != "" {
		flags |= flagExe
	}
	b = append(b, flags)
	b = appendStr(b, e.Type)
	b = appendStr(b, e.Cause.Op)
	b = binary.BigEndian.AppendUint64(b, e.Cause.RequestID)
	b = binary.BigEndian.AppendUint32(b, e.Cause.UID)
	b = binary.BigEndian.AppendUint32(b, e.Cause.PID)
	if e.Cause.Exe != "" {
		b = appendStr(b, e.Cause.Exe)
	}
	b = binary.AppendUvarint(b, uint64(len(e.Payload)))
	b = append(b, e.Payload...)
	b = append(b, e.PrevHash[:]...)
	e.Hash = sha256.Sum256(b)
	return append(b, e.Hash[:]...)
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil || n < 0 || len(r.b) < n {
		r.err = ErrMalformed
		return make([]byte, max(n, 0))
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

// bytes reads a str: a uvarint length in its shortest form (binary.Uvarint
// also takes padded forms, such as 0x80 0x00 for 0, which the encoder
// never writes), then that many bytes.
func (r *reader) bytes() []byte {
	n, k := binary.Uvarint(r.b)
	if k <= 0 || n > uint64(len(r.b)) || (k > 1 && r.b[k-1] == 0) {
		r.err = ErrMalformed
		return nil
	}
	r.b = r.b[k:]
	return r.take(int(n))
}

// decodeEnvelope parses b. The payload aliases b. checkHash recomputes the
// hash and reports a mismatch as an error. Only the encoder's own form is
// accepted (no unknown flag, no empty executable behind its flag, no
// padded length), so an accepted envelope re-encodes to the same bytes
// and one event has one stored form (FuzzDecodeEnvelope).
func decodeEnvelope(b []byte, checkHash bool) (*Envelope, error) {
	var e Envelope
	if err := decodeInto(&e, b, checkHash); err != nil {
		return nil, err
	}
	return &e, nil
}

func decodeInto(e *Envelope, b []byte, checkHash bool) error {
	if len(b) < 1+16+8+8+2+1+32+32 {
		return fmt.Errorf("%w: %d bytes is too short", ErrMalformed, len(b))
	}
	if b[0] != formatVersion {
		return fmt.Errorf("%w: format version %d", ErrMalformed, b[0])
	}
	r := reader{b: b[1:]}
	copy(e.ID[:], r.take(16))
	e.Seq = binary.BigEndian.Uint64(r.take(8))
	e.Time = time.Unix(0, int64(binary.BigEndian.Uint64(r.take(8))))
	e.Version = binary.BigEndian.Uint16(r.take(2))
	flags := r.take(1)[0]
	if flags&^knownFlags != 0 {
		return fmt.Errorf("%w: unknown flags %#02x (written by a newer daemon?)", ErrMalformed, flags&^knownFlags)
	}
	e.Ignorable = flags&flagIgnorable != 0
	e.Cause.HasPeer = flags&flagPeerCred != 0
	e.Type = string(r.bytes())
	e.Cause.Op = string(r.bytes())
	e.Cause.RequestID = binary.BigEndian.Uint64(r.take(8))
	e.Cause.UID = binary.BigEndian.Uint32(r.take(4))
	e.Cause.PID = binary.BigEndian.Uint32(r.take(4))
	e.Cause.Exe = ""
	if flags&flagExe != 0 {
		if e.Cause.Exe = string(r.bytes()); e.Cause.Exe == "" && r.err == nil {
			return fmt.Errorf("%w: the executable flag with an empty executable", ErrMalformed)
		}
	}
	e.Payload = r.bytes()
	copy(e.PrevHash[:], r.take(32))
	copy(e.Hash[:], r.take(32))
	if r.err != nil {
		return fmt.Errorf("%w: truncated field", ErrMalformed)
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(r.b))
	}
	if checkHash {
		if sum := sha256.Sum256(b[:len(b)-32]); sum != e.Hash {
			return fmt.Errorf("%w: stored hash %x does not match content (%x)", ErrHashMismatch, e.Hash[:6], sum[:6])
		}
	}
	return nil
}

// ErrHashMismatch is returned when an envelope's content does not match its
// hash, or its link does not match the previous envelope.
var ErrHashMismatch = errors.New("journal: hash mismatch")

// DecodeEnvelope parses an encoded envelope (as stored, or as Salvage
// returns it) and checks its own hash. The payload aliases b.
func DecodeEnvelope(b []byte) (*Envelope, error) { return decodeEnvelope(b, true) }

// Encode returns the envelope's stored form; its hash is recomputed from
// its content, so a changed envelope encodes with a hash of its own.
func (e *Envelope) Encode() []byte {
	c := *e
	return c.encode(nil)
}
