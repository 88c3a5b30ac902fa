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
// The bbolt file <data-dir>/overlayd/journal.db holds these buckets (index,
// terms and states are described under "Indexes"):
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
//	           "index"     u32 index version (Options.IndexVersion) + u64
//	                       "through": every event <= through is indexed
//	           "checkpoint" a compacted journal's checkpoint (see
//	                       "Compaction"): events up to it are in archives
//	events     u64 big-endian sequence number -> encoded envelope
//	index      posting keys, empty values (see "Indexes")
//	terms      each distinct indexed term -> empty
//	states     u64 sequence -> retained state (see "Indexes")
//
// The latest projection snapshot is the file <data-dir>/overlayd/snapshot,
// replaced atomically (temp file, fsync, rename, fsync of the directory).
// It lives outside bbolt so that writing a large snapshot never holds up a
// commit.
//
// Sequence numbers start at 1 (after a compaction, at the checkpoint + 1)
// and have no gaps; big-endian keys make bbolt's
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
// The decoder accepts exactly the encoder's form: a flag bit it does not
// know, the executable flag with an empty executable, or a length in a
// padded uvarint form is malformed, so an accepted envelope re-encodes to
// the same bytes.
//
// Because each hash covers the previous one, changing any byte of any event
// breaks either that event's hash or the next event's link; Verify names the
// first event that does not check out.
//
// # Indexes
//
// Each event is indexed under terms: "type:<type>", "op:<cause op>", and
// what Options.Indexer names (projections.Terms: "ip:10.200.3.7",
// "service:web", ...). A term is non-empty and holds no 0x00 byte (others
// are dropped). The index bucket has one key per (term, event), with an
// empty value:
//
//	u32     epoch: sequence >> 10 (blocks of 1024 events)
//	...     term
//	u8      0x00
//	u64     sequence
//
// so bbolt's order is epoch, then term, then sequence; a term's events are
// one cursor seek per epoch (Postings: ascending or descending, bounded),
// and the keys one indexing transaction adds fall on the few pages of the
// newest epoch. The terms bucket lists every distinct term once (Terms).
//
// The index is written by the store's indexer goroutine, not in the
// commit transaction: after a commit it waits 250 ms for more, reads the
// new events (no lock), then puts their keys, new terms and the meta
// "index" record (version, through) in one write transaction under the
// writer's lock, in batches of at most Options.IndexBatch (5000) events.
// Reads cover the events past "through" by scanning them (at most 65536:
// beyond that IndexStatus().Ready is false and Postings and Terms fail
// with ErrNoIndex, the caller scans). Close indexes what is left when it
// fits in one batch, so a journal closed cleanly is indexed to its head.
//
// Migration is the same loop: a writable Open of a file without an index
// record (written before indexes) creates the buckets with through 0; a
// file indexed with another IndexVersion has its index and terms buckets
// dropped first. A crash between batches resumes from "through" (putting
// a key again is harmless). A read-only open never writes: it reports the
// file's index as it is. Recover deletes the index keys and retained
// states of the events it removes (the indexer indexes acknowledged
// events only, so there are normally none) and writes the index record
// back with through no later than the acknowledged head. The failpoint
// "journal/index-batch" is hit after each indexing transaction.
//
// Retained states (PutState, StateAtOrBefore) are projection bodies at
// sequences the caller chooses (the daemon keeps one every N events, for
// `state --at`); the key is the u64 sequence, the value:
//
//	u32     projection schema version
//	[32]    hash of the event at the sequence
//	[32]    SHA-256 of (u64 sequence, the two fields above, body)
//	...     body (projections' binary codec)
//
// Get, Range (bounded, ascending or descending), SeqAtTime and SeqOfID
// (binary searches over the sequence keys: times and ULIDs are monotonic
// in sequence order) need no index.
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
// # Compaction: archives and the checkpoint
//
// Compact (journal compact, journal_compact, --retain-events) seals events
// first..N into an archive file and replaces them in the journal by a
// checkpoint at N. Sequence numbers do not restart: the journal then holds
// N+1..Head, event N+1 still links to event N's hash, which the checkpoint
// records, so Verify proves the chain from the checkpoint on; Iterate from
// before N starts at N+1, HashAt(N) is the checkpoint's hash, and a read
// of an earlier event fails with ErrCompacted (wrapping ErrNotFound) naming
// its archive. The checkpoint is the meta key "checkpoint":
//
//	[4]   magic "OVCK", u8 version (1)
//	[16]  journal id
//	u64   N, [32] hash of event N, [16] its ULID, i64 its time (Unix ns)
//	i64   when the compaction ran (Unix ns)
//	u32   projection schema of the state
//	[32]  SHA-256 of the state
//	u32   number of archives, oldest first, each: str name, u64 first,
//	      u64 last, [32] the hash its first event links to, [32] hash of
//	      its last event, [32] its digest
//	str   the state after event N (projections' snapshot codec)
//	[32]  SHA-256 of every preceding byte (self-hash)
//
// CheckIntegrity checks the state's hash and the self-hash; Verify reports a
// failure as "checkpoint at N: state does not match its hash". A second
// compaction appends its archive to the list, so the archives of a journal
// chain from event 1: each one's first event links to the last event of
// the one before (VerifyArchives).
//
// An archive, <dir>/archive/<journal-id>-<first:12>-<last:12>.ovla, verifies
// on its own (VerifyArchive):
//
//	header   [4] "OVLA", u8 version (1), [16] journal id, u64 first,
//	         u64 last, [32] the hash the first event links to (zero for
//	         event 1), u64 number of events
//	events   for each: u32 length, the envelope exactly as it was stored
//	trailer  [4] "OVLE", [32] hash of the last event, [32] SHA-256 of every
//	         preceding byte of the file (the digest the checkpoint records)
//
// Compact writes the archive first (in short read transactions, commits
// going on), syncs it, renames it into place and syncs the directory; then
// it brings the index up to the head and, commits still going on, copies
// the journal into journal.db.compact without what the checkpoint replaces
// (events <= N, index keys ending in a sequence <= N, retained states <= N;
// every other bucket and key as it is); then, commits held, it adds what
// was committed and indexed since that copy (events, their index keys and
// new terms, states, meta) and the checkpoint, cuts the file at its
// high-water mark and syncs it (6 ms of holding at 1M events,
// BENCHMARKS.md); then, reads held, it renames that file over the journal,
// syncs the directory and continues on it. A failure before the rename leaves the journal as it was (an archive
// no checkpoint names may be left; the next compaction at the same point
// replaces it). Failpoints: "journal/compact-archive" (half of the archive
// written), "journal/compact-swap" (the rewritten file complete, before the
// rename).
//
// # Durability and concurrency
//
// Append queues records and returns at once; one writer goroutine commits
// everything queued while the previous commit was being synced in a single
// bbolt transaction (group commit), so one fsync acknowledges many commands.
// Commits resolve in Append order. Failpoints (Failpoint) mark the crash
// windows: "journal/before-commit" (events put, nothing synced),
// "journal/after-commit" (synced, not yet answered), "journal/snapshot-write"
// (half of a snapshot's temporary file written), "journal/index-batch" (an
// indexing transaction committed).
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
