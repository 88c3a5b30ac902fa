// Package journal is the daemon's append-only log of decisions, stored in
// one bbolt file, with a hash chain that makes a changed or lost event
// detectable, an identity, projection snapshots, and group commit. It
// survives storage faults: a damaged file gives errors, never a panic; a
// failed write makes the store read-only until Recover; and a file bbolt
// cannot open can still be salvaged (SalvageFile, Rewrite: `overlayctl
// journal repair`).
//
// # File layout
//
// The bbolt file <data-dir>/overlayd/journal.db holds two buckets:
//
//	meta       "format"    u32 big-endian file format (currently 1)
//	           "id"        [16] the journal id (ID): random, written in the
//	                       transaction that creates the buckets; a file
//	                       written before ids gets one at its first
//	                       writable open
//	           "legacy"    [1] present (value 1) when the id was given to a
//	                       file that already held events: kernel objects
//	                       marked without an id may be this journal's
//	           "head"      u64 big-endian sequence + [32] hash of the last
//	                       event, written in the same transaction as it
//	                       (absent in files written before ids); Open
//	                       refuses a file whose events end before it
//	           "discarded" 80-byte records, newest last (at most 64): u64
//	                       first sequence, [32] its hash, u64 last
//	                       sequence, [32] its hash, of each commit that
//	                       failed (answered as failed), written by Recover,
//	                       so that a salvage of the raw pages, where such
//	                       events may linger, leaves them out
//	events     u64 big-endian sequence number -> encoded envelope
//
// The latest projection snapshot is the file <data-dir>/overlayd/snapshot,
// replaced atomically (temp file, fsync, rename, fsync of the directory).
// It lives outside bbolt so that writing a large snapshot never holds up a
// commit.
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
//	        skip it), bit 1 the cause carries peer credentials, bit 2 the
//	        cause carries the caller's executable (the str after pid)
//	str     event type (stable snake_case)
//	str     cause: IPC op ("boot", "reconcile" for the daemon's own)
//	u64     cause: request id
//	u32     cause: peer uid (SO_PEERCRED)
//	u32     cause: peer pid
//	str     cause: the caller's executable path (/proc/PID/exe when the
//	        request was read); present only when flag bit 2 is set, so
//	        envelopes written before it decode unchanged (Exe "")
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
//	[4]     magic "OVS2"
//	[16]    journal id of the journal it was taken from
//	u32     projection schema version (projections.SnapshotSchema)
//	u64     sequence number of the last event folded into the body
//	[32]    hash of that event
//	[32]    SHA-256 of the 60 header bytes after the magic, then the body
//	...     body (the projected state, projections' binary codec)
//
// The encoding before journal ids, "OVSN", still decodes (Journal zero): u32
// schema, u64 sequence, [32] hash, [32] SHA-256 of the body, body. A
// snapshot is only a cache: a missing, corrupt or old one, one of another
// journal, or one whose event hash does not match the log, means a full
// replay (cmd/internal/replay).
//
// # Durability and concurrency
//
// Append queues records and returns at once; one writer goroutine commits
// everything queued while the previous commit was being synced in a single
// bbolt transaction (group commit), so one fsync acknowledges many commands.
// Commits resolve in Append order. Failpoints (Failpoint) mark the crash
// windows: "journal/before-commit" (events put, nothing synced),
// "journal/after-commit" (synced, not yet answered), "journal/snapshot-write"
// (half of a snapshot's temporary file written).
//
// # Faults
//
// A commit that fails (ENOSPC, EIO, a failed fsync, a panic) fails its batch
// and every Append queued behind it, with an error wrapping ErrReadOnly and
// the cause; the store is then read-only (Health: the cause and since when)
// and later Appends fail at once. Head stays at the last acknowledged event
// and no read returns an event past it, even when the failed commit reached
// the file. Recover never retries the failed handle: it probes the medium,
// closes and reopens the file, runs the page check, confirms the
// acknowledged head, deletes any event past it, syncs, and only then accepts
// writes. The Store interface states this contract; Faulty injects such
// failures for callers' tests.
//
// Every call into bbolt runs under a guard (debug.SetPanicOnFault and
// recover): bbolt's page assertions and memory faults on a truncated mapping
// become errors wrapping ErrDamaged (a *DamageError naming the file and the
// page). Before bbolt maps a file, Open walks its structure with bounds
// checks (both meta pages, the high-water mark against the file's size, the
// freelist, the root bucket, every branch page: about 10 ms for 1M events),
// so a truncated or broken tree is refused at Open instead of faulting
// later. A panic that may have left bbolt's locks held (in Begin, Rollback
// or Commit) marks the handle stuck: it is never called again, every call
// fails at once, and Recover reopens the file through the stuck handle's
// descriptor (whose mapping keeps the file lock). Check runs the full page
// walk and then bbolt's own Tx.Check (1M events, 237 MiB: about 0.5 s, during
// which commits wait); Verify includes its findings. Damage found by any call
// makes a writable store read-only: writing on into a damaged file could
// spread the damage.
package journal
