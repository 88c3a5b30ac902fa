package journal

import (
	"errors"
	"github.com/zlayer/overlayd/tools/testtemp"
	"math/rand"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/zlayer/overlayd/tools/testseed"
)

// stripIndex makes dir's journal what the code before indexes wrote: no
// index or states bucket, no index record.
func stripIndex(t *testing.T, dir string) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketIndex, bucketTerms, bucketStates} {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Delete(keyIndex)
	}); err != nil {
		t.Fatal(err)
	}
}

// waitIndexed waits until the index covers the head.
func waitIndexed(t *testing.T, s *BoltStore) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for st := s.IndexStatus(); !st.Ready || st.Through != headOf(s); st = s.IndexStatus() {
		if time.Now().After(deadline) {
			t.Fatalf("index not complete after 20 s: %+v (head %d)", s.IndexStatus(), headOf(s))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func headOf(s Store) uint64 { seq, _ := s.Head(); return seq }

// setBatchHook installs indexBatchHook for the store at dir's journal.
func setBatchHook(t *testing.T, dir string, fn func(through uint64)) {
	path := filepath.Join(dir, FileName)
	indexBatchHook = func(s *BoltStore, through uint64) {
		if s.path == path {
			fn(through)
		}
	}
	t.Cleanup(func() { indexBatchHook = nil })
}

// A journal written before indexes, and one indexed with another version,
// are indexed by a writable Open in the background, while commits go on;
// a read-only open of the unindexed file reads it and says it has no
// index.
func TestIndexMigration(t *testing.T) {
	for _, tc := range []struct {
		name  string
		strip bool // the file of the code before indexes; otherwise an index of version 0
	}{{"before-indexes", true}, {"other-version", false}} {
		t.Run(tc.name, func(t *testing.T) {
			seed := testseed.New(t)
			r := rand.New(rand.NewSource(seed))
			dir := testtemp.Dir(t)
			old := indexedOptions(r)
			old.Indexer, old.IndexVersion = nil, 0
			s := openT(t, dir, old)
			fillRandom(t, r, 3000, s)
			s.Close()
			if tc.strip {
				stripIndex(t, dir)
				ro := openT(t, dir, Options{ReadOnly: true, Indexer: testIndexer, IndexVersion: 1})
				if st := ro.IndexStatus(); st.Ready || st.Through != 0 {
					t.Fatalf("read-only open of an unindexed file: %+v", st)
				}
				if err := ro.Postings("type:ip_allocated", 0, 0, false, func(uint64) error { return nil }); !errors.Is(err, ErrNoIndex) {
					t.Fatalf("Postings without an index: %v", err)
				}
				if err := ro.Terms("", func(string) error { return nil }); !errors.Is(err, ErrNoIndex) {
					t.Fatalf("Terms without an index: %v", err)
				}
				if n := len(allEvents(t, ro)); n < 3000 {
					t.Fatalf("read-only open of an unindexed file: %d events", n)
				}
				if _, err := ro.Get(7); err != nil {
					t.Fatal(err)
				}
				ro.Close()
			} else {
				ro := openT(t, dir, Options{ReadOnly: true, Indexer: testIndexer, IndexVersion: 1})
				if st := ro.IndexStatus(); st.Ready || st.Version != 0 {
					t.Fatalf("read-only open of a file indexed with version 0, asked for 1: %+v", st)
				}
				ro.Close()
			}

			opt := indexedOptions(r)
			opt.IndexBatch = 250
			var batches int
			var mu sync.Mutex
			setBatchHook(t, dir, func(uint64) { mu.Lock(); batches++; mu.Unlock() })
			s = openT(t, dir, opt)
			// Commits meanwhile; reads meanwhile scan what is not indexed yet.
			fillRandom(t, r, 400, s)
			if st := s.IndexStatus(); st.Ready {
				checkIndex(t, r, s)
			}
			waitIndexed(t, s)
			checkIndex(t, r, s)
			mu.Lock()
			if batches < 3000/250 {
				t.Errorf("%d migration batches for 3000 events of 250 each", batches)
			}
			mu.Unlock()
			fillRandom(t, r, 100, s)
			checkIndex(t, r, s)
			s.Close()
			ro := openT(t, dir, Options{ReadOnly: true, Indexer: testIndexer, IndexVersion: 1})
			if st := ro.IndexStatus(); !st.Ready || st.Version != 1 {
				t.Fatalf("after the migration, read-only: %+v", st)
			}
			checkIndex(t, r, ro)
		})
	}
}

// A migration cut short (Close between batches, as a crash would) resumes
// from its last batch at the next writable Open.
func TestIndexMigrationResumes(t *testing.T) {
	seed := testseed.New(t)
	r := rand.New(rand.NewSource(seed))
	dir := testtemp.Dir(t)
	s := openT(t, dir, indexedOptions(r))
	fillRandom(t, r, 2000, s)
	head, _ := s.Head()
	s.Close()
	stripIndex(t, dir)

	opt := indexedOptions(r)
	opt.IndexBatch = 100
	reached, release := make(chan struct{}), make(chan struct{})
	setBatchHook(t, dir, func(through uint64) {
		if through == 300 {
			close(reached)
			<-release
		}
	})
	s = openT(t, dir, opt)
	select {
	case <-reached:
	case <-time.After(20 * time.Second):
		t.Fatal("the migration did not reach event 300")
	}
	closed := make(chan error)
	go func() { closed <- s.Close() }()
	time.Sleep(20 * time.Millisecond) // Close has asked the migration to stop
	close(release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	ro := openT(t, dir, Options{ReadOnly: true, Indexer: testIndexer, IndexVersion: 1})
	if st := ro.IndexStatus(); st.Through != 300 {
		t.Fatalf("after a migration stopped at 300: %+v (head %d)", st, head)
	}
	ro.Close()

	var first uint64
	setBatchHook(t, dir, func(through uint64) {
		if first == 0 {
			first = through
		}
	})
	s = openT(t, dir, opt)
	waitIndexed(t, s)
	if first != 400 {
		t.Fatalf("the resumed migration's first batch ended at %d, want 400 (resumed from 300)", first)
	}
	checkIndex(t, r, s)
}

// While the index is behind the head, Postings and Terms answer from the
// index up to its through and from a scan past it, merged.
func TestIndexReadsWhileBehind(t *testing.T) {
	seed := testseed.New(t)
	r := rand.New(rand.NewSource(seed))
	dir := testtemp.Dir(t)
	s := openT(t, dir, indexedOptions(r))
	fillRandom(t, r, 3000, s)
	s.Close()
	stripIndex(t, dir)
	opt := indexedOptions(r)
	opt.IndexBatch = 1100 // ends inside an epoch
	reached, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	setBatchHook(t, dir, func(through uint64) {
		if through == 1100 {
			once.Do(func() { close(reached) })
			<-release
		}
	})
	s = openT(t, dir, opt)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	select {
	case <-reached:
	case <-time.After(20 * time.Second):
		t.Fatal("the indexer did not reach event 1100")
	}
	if st := s.IndexStatus(); !st.Ready || st.Through != 1100 {
		t.Fatalf("index behind the head: %+v", st)
	}
	checkIndex(t, r, s)
	close(release)
	waitIndexed(t, s)
	checkIndex(t, r, s)
}
