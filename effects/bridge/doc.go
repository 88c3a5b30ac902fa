// Package bridge makes services and container attachments real: a Linux
// bridge per service holding the gateway of its subnet, and for every
// attached container a veth pair whose container end is created directly in
// the container's network namespace as eth0 (and, when the container joins
// the global overlay, a second pair as eth1).
//
// The reconciler reaches the kernel only through Kernel and Netns (kernel.go):
// netlink in the daemon (newKernel), an in-memory fake in the tests.
//
// # Passes
//
// A change (an attach, a detach, a service set up or torn down) touches
// what it names. A full pass (boot, the periodic check, a retry) ensures
// every bridge (mark, MTU, MAC, exactly the gateway address, up), checks
// every container's process and namespace (a container is gone only when
// /proc says the process does not exist or its PID names another
// namespace; then its detach is journaled through the Detacher), and wires
// again the attachments whose wiring is off: the first pass re-applies all
// of them (adoption after a restart); later ones compare the host ends in
// one link dump, and look at the containers' ends from the node (Kernel.Peer:
// state, mark, exactly the address), at most 32 containers per pass, in
// turn. Then it removes this owner's links that belong to nothing. An
// answer that does not say "absent" (EMFILE, ENOBUFS, an interrupted dump)
// is never taken for one: nothing is detached or deleted on it, and the
// pass returns the error (the runner tries again).
//
// # Ownership marks
//
// Every link it creates carries an ownership mark in its alias, so that a
// full pass (boot, and the periodic drift check) adopts what survives,
// repairs what was deleted, and removes exactly the links that carry its
// own mark and belong to nothing in the state. It never guesses by name
// prefix, and never adopts, changes or deletes a link marked by another
// owner (effects.Owner: the journal whose decisions made it, and the home
// of the daemon that wired it). A mark is words separated by one space:
//
//	zlayer-overlayd bridge <service> j=<journal>                 a service bridge
//	zlayer-overlayd attach <handle>/<inode> <leg> j=<journal>     a veth's host end
//	zlayer-overlayd ctr <handle>/<inode> <leg> j=<journal> h=<home>
//	                                                              its container end (eth0, eth1)
//
// <service> is the service name, <handle> the attachment's handle key
// (linux_pid:<pid>), <inode> the container's network namespace inode (0:
// not recorded), <leg> "s" (eth0, the service bridge) or "g" (eth1, the
// global overlay), <journal> the short journal id (effects.Owner.Journal)
// and <home> the daemon's home (effects.Owner.Home). Host ends and bridges
// live in the daemon's own namespace, so the journal tells owners apart;
// container ends live in namespaces that two daemons running from copies
// of one data dir both see, so they carry the home too. Owner fields hold
// no spaces and at most 64 bytes (they are sanitised), so a mark stays far
// below the kernel's 255 bytes (IFALIASZ); words with an "=" that this
// version does not know are ignored, so a newer daemon may add fields.
//
// The marks written before journals had ids have no j= (and container ends
// had no mark): a link marked so counts as this owner's only when the
// journal is that old one (effects.Owner.Legacy, or an Owner without a
// journal id, which also writes marks in that format); it is then marked
// again with the owner. A veth with no alias at all and a name of the form
// HostName gives is the leftover of a crash between creating a pair and
// marking it (two requests: the kernel ignores an alias given at
// creation): it is adopted when an attachment wants that name, else
// removed.
//
// A link of another owner, or with an alias that is no mark of this daemon,
// that is in the way of a name this owner needs is an error naming the link
// and its owner (ErrNotOurs). A container whose eth0 or eth1 carries
// another owner's mark is refused (a StepError naming the owner) before
// anything in it changes, and is not reported gone.
package bridge
