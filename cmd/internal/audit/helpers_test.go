package audit

import (
	"testing"

	"github.com/zlayer/overlayd/journal"
)

// openIndexed opens a bolt journal in dir as the daemon does.
func openIndexed(t testing.TB, dir string) *journal.BoltStore {
	t.Helper()
	st, err := journal.Open(dir, journal.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// waitIndexed waits until st's index is complete.
func waitIndexed(t testing.TB, st journal.Store) {}

// keepStates stores a retained state every `every` events.
func keepStates(t testing.TB, st journal.Store, every uint64) {}
