// Package projections holds the daemon's state and the two pure functions that
// drive it: Decide turns a validated command into events (or an error that
// names the field at fault), and Apply folds one event into the state.
//
// Nothing in this package does I/O, reads the clock or draws random numbers:
// everything of that kind (generated public keys, the process's network
// namespace inode, the node's own public key) arrives inside a command. Given
// the same events in the same order, Apply always builds the same State, which
// is what makes replay at boot, snapshots and audit possible.
//
// The state is split in one file per aggregate: node identity (node.go), the
// global overlay (global.go), services (services.go), address management
// (ipam.go), peers (peers.go), attachments (attachments.go) and DNS records
// (dns.go). Each file holds the aggregate's state, its event payloads, its
// Apply cases and its Decide cases.
//
// Concurrency: a State is not safe for concurrent use; its owner serialises
// Decide and Apply (the daemon's sequencer does).
package projections
