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
// status lists. Unknown fields are ignored. PROTOCOL.md in the shared
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
// # Extension ops
//
// journal_list, journal_verify and state_dump serve the daemon's own tools
// (overlayctl) while the daemon holds the journal; docs/PROTOCOL-EXTENSIONS.md
// describes them. A client of the reference contract never sends them.
package ipc
