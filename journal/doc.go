// Package journal is the daemon's append-only log of decisions, stored in
// one bbolt file, with a hash chain that makes a changed or lost event
// detectable, projection snapshots, and group commit.
//
// # File layout
//
// The bbolt file <data-dir>/overlayd/journal.db holds two buckets:
//
//	meta       "format" -> u32 big-endian file format (currently 1)
//	events     u64 big-endian sequence number -> encoded envelope
//
// The latest projection snapshot is the file <data-dir>/overlayd/snapshot,
// replaced atomically (temp file, fsync, rename). It lives outside bbolt so
// that writing a large snapshot never holds up a commit.
//
// Sequence numbers start at 1 and have no gaps; big-endian keys make bbolt's
// cursor order the log order.
//
// # Envelope encoding (format 1)
//
// All integers are big-endian; "str" is a uvarint length then bytes.
//
//	u8      format version (1)
//	[16]    ULID (monotonic in sequence order)
//	u64     sequence number
//	i64     time, Unix nanoseconds, when the batch was committed
//	u16     event schema version
//	u8      flags: bit 0 ignorable (a reader that does not know the type may
//	        skip it), bit 1 the cause carries peer credentials
//	str     event type (stable snake_case)
//	str     cause: IPC op ("boot", "reconcile" for the daemon's own)
//	u64     cause: request id
//	u32     cause: peer uid (SO_PEERCRED)
//	u32     cause: peer pid
//	str     payload (JSON, defined by package projections)
//	[32]    previous envelope's hash (zero for sequence 1)
//	[32]    hash: SHA-256 of every preceding byte of this envelope
//
// Because each hash covers the previous one, changing any byte of any event
// breaks either that event's hash or the next event's link; Verify names the
// first event that does not check out.
//
// # Snapshot encoding (the snapshot file)
//
//	[4]     magic "OVSN"
//	u32     projection schema version (projections.SnapshotSchema)
//	u64     sequence number of the last event folded into the body
//	[32]    hash of that event
//	[32]    SHA-256 of the body
//	...     body (JSON of the projected state)
//
// A snapshot is only a cache: a missing, corrupt or old one, or one whose
// event hash does not match the log, means a full replay.
//
// # Durability and concurrency
//
// Append queues records and returns at once; one writer goroutine commits
// everything queued while the previous commit was being synced in a single
// bbolt transaction (group commit), so one fsync acknowledges many commands.
// Commits resolve in Append order. A failed commit fails that batch and
// every later Append: the caller must stop (the journal is the truth, and a
// decision that is not in it must never be acknowledged).
package journal
