// Package bridge makes services and container attachments real: a Linux
// bridge per service holding the gateway of its subnet, and for every
// attached container a veth pair whose container end is created directly in
// the container's network namespace as eth0 (and, when the container joins
// the global overlay, a second pair as eth1).
//
// Every link it creates carries an ownership mark in its alias
// ("zlayer-overlayd bridge <service>", "zlayer-overlayd attach <handle>
// <leg>"), so that a full pass (boot, and the periodic drift check) adopts
// what survives, repairs what was deleted, and removes exactly the links
// that carry the mark and belong to nothing in the state. It never guesses
// by name prefix.
package bridge
