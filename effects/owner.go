package effects

// Owner identifies whose decisions made a kernel object. The marks a
// reconciler puts on what it creates (link aliases, the NAT table) carry
// it, and a reconciler adopts, repairs or deletes only objects whose mark
// names its own Owner: a fresh or foreign journal (a data dir replaced, or
// copied to another node) leaves another journal's objects alone, and says
// so, instead of taking them over or removing them as strays.
type Owner struct {
	// Journal is the short id of the journal (journal.ID.Short()).
	Journal string
	// Home tells apart two daemons running from copies of one journal: a
	// hash of the machine id and the daemon's network namespace. Marks on
	// objects that live outside the daemon's own namespace (a container's
	// end of a veth) carry it too.
	Home string
	// Legacy is set for a journal written before journals had ids: objects
	// marked without an owner are taken to be its own (adopted and marked
	// again with the owner).
	Legacy bool
}

// Failpoint, when set (test builds with the failpoints tag), is called at
// named crash windows, e.g. "bridge/after-veth-create" (a veth pair exists,
// its host end not yet marked).
var Failpoint func(name string)

// Hit calls Failpoint, if set.
func Hit(name string) {
	if Failpoint != nil {
		Failpoint(name)
	}
}
