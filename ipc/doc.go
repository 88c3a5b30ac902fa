// Package ipc is protocol v1 between the orchestrator and the overlay
// daemon: its Go types, the frame codec, a server and a client.
//
// # Framing
//
// A frame is a 4-byte little-endian unsigned length followed by that many
// bytes of UTF-8 JSON. The body is at most MaxFrame (8 MiB) bytes; the length
// is checked before anything is allocated, on both sides.
//
// # JSON
//
//	request : {"frame":"request","id":<u64>,"request":{"op":"<name>",...}}
//	response: {"frame":"response","id":<u64>,"response":{"result":"<name>",...}}
//	event   : {"frame":"event","event":"<name>",...}
//
// Enums are internally tagged (tag first on output; anywhere on input).
// Integers are exact (ids are u64 and never pass through float64); floats,
// strings and negatives are refused where an integer is expected. IP
// addresses are canonical strings; leading-zero octets and zones are refused.
// Optional fields are omitted on output and may be absent or null on input,
// except where the reference decoder refuses null: the peer scope and the
// status lists. Unknown fields are ignored. As in the reference decoder, a
// key given twice in any object of a frame, and a lone UTF-16 surrogate
// escape in any string, are refused (encoding/json would keep the last key
// and replace the surrogate: two parsers reading one frame two ways); a
// frame whose "id" is given twice has no id. PROTOCOL.md in the shared
// contract is the normative text; golden-v1.tsv and decode-v1.tsv are its
// test vectors and are tests of this package.
//
// # Errors
//
// A frame that cannot be read (bad length, invalid UTF-8, not a JSON object,
// no u64 id) closes the connection. A readable frame with a bad op or bad
// fields gets an err response with its id, naming the field, and the
// connection stays open.
//
// # Limits
//
// The server protects the daemon from its clients (Server's fields set
// them; the defaults are in parentheses):
//
//   - Connections (MaxConns, 1024; ReservedForRoot, 16 of them for uid 0).
//     At the limit a new connection evicts the oldest connection that has
//     not completed a frame, or, when there is none, gets one err response
//     frame with id 0 ("too many connections: 1024 open (limit 1024); try
//     again later") and is closed. An evicted connection gets the same kind
//     of frame when nothing else is being written to it. Clients never use
//     id 0, so an id-0 err is always the server speaking for itself; the Go
//     client turns it into a *RefusedError.
//   - Accept errors back off from 5 ms to 1 s and are logged once per burst.
//     Out of descriptors (EMFILE, ENFILE), a reserved descriptor is given
//     back for a moment to accept the waiting connections, answer each an
//     id-0 err ("out of file descriptors (…); try again later") and close it.
//   - A frame whose first byte has arrived must complete within
//     FrameTimeout (10 s); between frames a connection may idle forever.
//   - A frame body is read into a buffer that grows as its bytes arrive,
//     never allocated at its declared length.
//   - A connection's encoded frames waiting to be written, responses and
//     events, are bounded by MaxQueuedBytes (16 MiB); past half of it the
//     connection's requests wait for its writes; one write may block for
//     WriteTimeout (10 s). A client that does not read is closed at either
//     limit.
//   - Expensive requests (journal_list, journal_verify, state_dump): one in
//     flight per connection, until its response is written; MaxExpensive (2)
//     in flight server-wide.
//
// # Extension ops
//
// journal_list, journal_verify and state_dump serve the daemon's own tools
// (overlayctl) while the daemon holds the journal; docs/PROTOCOL-EXTENSIONS.md
// describes them. A client of the reference contract never sends them.
package ipc
