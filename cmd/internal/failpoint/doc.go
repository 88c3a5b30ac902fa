// Package failpoint arms named crash windows in test builds.
//
// Release builds carry none: without the build tag `failpoints`, Install
// does nothing and the hooks in journal, effects and the daemon stay nil. Built with
// `-tags failpoints`, Install reads the failpoints to arm from
//
//	OVERLAYD_FAILPOINTS="name=action;name=action"
//	OVERLAYD_FAILPOINTS_FILE=/path     (same syntax, re-read when it changes,
//	                                    so a test can arm a point after boot)
//
// where action is `kill` (SIGKILL the process: a crash at that line),
// `sleep(ms)`, `panic`, or `off`, optionally prefixed by `N*` (act the next
// N hits, then stay quiet). The points:
//
//	journal/before-commit      events put in the write transaction, nothing written or synced
//	journal/after-commit       the transaction synced, its commands not yet answered
//	journal/snapshot-write     half of a snapshot's temporary file written
//	bridge/after-veth-create   a veth pair exists, its host end not yet marked
//	effects/after-pass/<name>  reconciler <name> finished a pass
//	daemon/sequencer           the sequencer is about to decide its next job
//	                           (a command, a read, the watchdog's probe):
//	                           `sleep(ms)` here stalls the whole pipeline, and
//	                           with it systemd's watchdog pings
package failpoint
