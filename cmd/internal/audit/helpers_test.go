package audit

import (
	"testing"
	"time"

	"github.com/zlayer/overlayd/cmd/internal/replay"
	"github.com/zlayer/overlayd/journal"
)

// openIndexed opens a bolt journal in dir as the daemon does.
func openIndexed(t testing.TB, dir string) *journal.BoltStore {
	t.Helper()
	st, err := journal.Open(dir, replay.Indexing(journal.Options{NoSync: true}))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// waitIndexed waits until st's index is complete.
func waitIndexed(t testing.TB, st journal.Store) {
	t.Helper()
	ix := st.(journal.Indexed)
	for deadline := time.Now().Add(30 * time.Second); !ix.IndexStatus().Ready; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("index not ready: %+v", ix.IndexStatus())
		}
	}
}

// keepStates stores a retained state every `every` events, as the daemon
// does.
func keepStates(t testing.TB, st journal.Store, every uint64) {
	t.Helper()
	head, _ := st.Head()
	for seq := every; seq <= head; seq += every {
		s, _, err := replay.Load(st, replay.Options{NoSnapshot: true, UpTo: seq})
		if err != nil {
			t.Fatal(err)
		}
		h, err := st.HashAt(seq)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.(journal.Indexed).PutState(replay.Snapshot(s, h)); err != nil {
			t.Fatal(err)
		}
	}
}

// queriers are the two ways Local answers: through the index and by
// scanning; both must give the same answers.
func queriers(st journal.Store) []*Local {
	ix := NewLocal(st)
	if ix.How() != "index" {
		panic("the store's index is not ready")
	}
	return []*Local{ix, {store: st, r: scanReader{st}, how: "scan"}}
}
