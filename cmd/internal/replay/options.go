package replay

import (
	"github.com/zlayer/overlayd/journal"
	"github.com/zlayer/overlayd/projections"
)

// Indexing adds the object index to o: the daemon and overlayctl open
// journals with it, so that both agree on the index's version (a
// read-only open with another version would not use it).
func Indexing(o journal.Options) journal.Options {
	o.Indexer = projections.Terms
	o.IndexVersion = projections.TermsVersion
	return o
}
