package journal

import (
	"errors"
	"fmt"
	"github.com/zlayer/overlayd/tools/testtemp"
	"io"
	"math/rand"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zlayer/overlayd/tools/testseed"
)

// testIndexer names the terms listed in the payload, comma-separated.
func testIndexer(typ string, ver uint16, payload []byte) []string {
	if len(payload) == 0 {
		return nil
	}
	return strings.Split(string(payload), ",")
}

// bruteTerms is what an event must be indexed under, written out apart
// from eventTerms: its type, its op, and its payload's terms, less the
// empty ones and those holding 0x00.
func bruteTerms(e *Envelope) map[string]bool {
	set := map[string]bool{"type:" + e.Type: true, "op:" + e.Cause.Op: true}
	for _, t := range strings.Split(string(e.Payload), ",") {
		if t != "" && !strings.Contains(t, "\x00") {
			set[t] = true
		}
	}
	return set
}

// testClock advances by 0..2 ms per commit (equal times happen).
func testClock(r *rand.Rand) func() time.Time {
	var mu sync.Mutex
	t := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Duration(r.Intn(3)) * time.Millisecond)
		return t
	}
}

func lockedReader(r *rand.Rand) io.Reader {
	var mu sync.Mutex
	return readerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return r.Read(p)
	})
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// randomRecord is an event with a few terms from small pools, so that
// terms repeat, some are prefixes of others, and a few are invalid.
func randomRecord(r *rand.Rand) Record {
	var terms []string
	for range r.Intn(4) {
		switch r.Intn(8) {
		case 0, 1, 2:
			terms = append(terms, fmt.Sprintf("ip:10.0.0.%d", r.Intn(30)))
		case 3:
			terms = append(terms, fmt.Sprintf("service:s%d", r.Intn(5)))
		case 4:
			terms = append(terms, fmt.Sprintf("peer:k%d", r.Intn(12)))
		case 5:
			terms = append(terms, "bad\x00term")
		case 6:
			terms = append(terms, "")
		case 7:
			terms = append(terms, "ip:10.0.0.1")
		}
	}
	types := []string{"ip_allocated", "ip_released", "peer_added", "dns_registered"}
	ops := []string{"allocate_ip", "release_ip", "add_peer", "reconcile"}
	return Record{Type: types[r.Intn(len(types))], Version: 1, Cause: Cause{Op: ops[r.Intn(len(ops))], RequestID: r.Uint64()},
		Payload: []byte(strings.Join(terms, ","))}
}

// fillRandom appends about n random events to every store (the same ones),
// in batches of random sizes, several in flight at once.
func fillRandom(t *testing.T, r *rand.Rand, n int, stores ...Store) {
	t.Helper()
	for done := 0; done < n; {
		var commits []*Commit
		for range 1 + r.Intn(4) {
			recs := make([]Record, 1+r.Intn(40))
			for i := range recs {
				recs[i] = randomRecord(r)
			}
			done += len(recs)
			for _, s := range stores {
				commits = append(commits, s.Append(recs))
			}
		}
		for _, c := range commits {
			if _, err := c.Wait(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// bruteIndex scans s: term -> sequences, ascending.
func bruteIndex(t *testing.T, s Store) map[string][]uint64 {
	t.Helper()
	idx := map[string][]uint64{}
	if err := s.Iterate(0, true, func(e *Envelope) error {
		for term := range bruteTerms(e) {
			idx[term] = append(idx[term], e.Seq)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return idx
}

func postings(t *testing.T, s Indexed, term string, from, to uint64, reverse bool) []uint64 {
	t.Helper()
	var got []uint64
	if err := s.Postings(term, from, to, reverse, func(seq uint64) error { got = append(got, seq); return nil }); err != nil {
		t.Fatalf("Postings(%q, %d, %d, %v): %v", term, from, to, reverse, err)
	}
	return got
}

func terms(t *testing.T, s Indexed, prefix string) []string {
	t.Helper()
	var got []string
	if err := s.Terms(prefix, func(term string) error { got = append(got, term); return nil }); err != nil {
		t.Fatalf("Terms(%q): %v", prefix, err)
	}
	return got
}

// checkIndex compares s's index with a scan of its events: every term,
// whole and between random bounds, both ways; and Terms by prefix.
func checkIndex(t *testing.T, r *rand.Rand, s Indexed) {
	t.Helper()
	brute := bruteIndex(t, s)
	head, _ := s.Head()
	all := make([]string, 0, len(brute))
	for term := range brute {
		all = append(all, term)
	}
	slices.Sort(all)
	if got := terms(t, s, ""); !slices.Equal(got, all) {
		t.Fatalf("Terms(\"\") = %q, want %q", got, all)
	}
	for _, prefix := range []string{"ip:", "ip:10.0.0.1", "type:", "op:re", "zz", "bad"} {
		var want []string
		for _, term := range all {
			if strings.HasPrefix(term, prefix) {
				want = append(want, term)
			}
		}
		if got := terms(t, s, prefix); !slices.Equal(got, want) {
			t.Fatalf("Terms(%q) = %q, want %q", prefix, got, want)
		}
	}
	for _, term := range append(all, "ip:10.0.0.99", "bad", "ip:") {
		want := brute[term]
		if got := postings(t, s, term, 0, 0, false); !slices.Equal(got, want) {
			t.Fatalf("Postings(%q) = %v, want %v", term, got, want)
		}
		rev := slices.Clone(want)
		slices.Reverse(rev)
		if got := postings(t, s, term, 0, 0, true); !slices.Equal(got, rev) {
			t.Fatalf("Postings(%q, reverse) = %v, want %v", term, got, rev)
		}
		for range 3 {
			from, to := uint64(r.Int63n(int64(head)+2)), uint64(r.Int63n(int64(head)+2))
			var want []uint64
			for _, seq := range brute[term] {
				if seq >= max(from, 1) && (to == 0 || seq <= to) {
					want = append(want, seq)
				}
			}
			if got := postings(t, s, term, from, to, false); !slices.Equal(got, want) {
				t.Fatalf("Postings(%q, %d, %d) = %v, want %v", term, from, to, got, want)
			}
			slices.Reverse(want)
			if got := postings(t, s, term, from, to, true); !slices.Equal(got, want) {
				t.Fatalf("Postings(%q, %d, %d, reverse) = %v, want %v", term, from, to, got, want)
			}
		}
	}
	// fn's error ends the walk and comes back as it is.
	stop := errors.New("stop")
	n := 0
	if err := s.Postings("type:ip_allocated", 0, 0, false, func(uint64) error { n++; return stop }); len(brute["type:ip_allocated"]) > 0 && (err != stop || n != 1) {
		t.Fatalf("Postings with a failing fn: %v after %d calls", err, n)
	}
}

func indexedOptions(r *rand.Rand) Options {
	// Clock and entropy draw from sources of their own: they run on the
	// writer goroutine.
	return Options{Indexer: testIndexer, IndexVersion: 1, NoSync: true,
		Clock: testClock(rand.New(rand.NewSource(r.Int63()))), Entropy: lockedReader(rand.New(rand.NewSource(r.Int63())))}
}

func openT(t *testing.T, dir string, opt Options) *BoltStore {
	t.Helper()
	s, err := Open(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestIndexMatchesScan(t *testing.T) {
	seed := testseed.New(t)
	r := rand.New(rand.NewSource(seed))
	dir := testtemp.Dir(t)
	opt := indexedOptions(r)
	s := openT(t, dir, opt)
	mem := NewMemIndexed(testIndexer)
	fillRandom(t, r, 1500+r.Intn(1500), s, mem)
	if st := s.IndexStatus(); !st.Ready || st.Version != 1 {
		t.Fatalf("a journal indexed from its first event: %+v", st)
	}
	checkIndex(t, r, s)
	checkIndex(t, r, mem)
	s.Close()

	s = openT(t, dir, opt)
	if st := s.IndexStatus(); !st.Ready {
		t.Fatalf("after a reopen: %+v", st)
	}
	fillRandom(t, r, 300, s, mem)
	checkIndex(t, r, s)
	s.Close()

	ro := openT(t, dir, Options{ReadOnly: true, Indexer: testIndexer, IndexVersion: 1})
	if st := ro.IndexStatus(); !st.Ready {
		t.Fatalf("read-only open of an indexed journal: %+v", st)
	}
	checkIndex(t, r, ro)
	if got, want := postings(t, ro, "ip:10.0.0.1", 0, 0, false), postings(t, mem, "ip:10.0.0.1", 0, 0, false); !slices.Equal(got, want) {
		t.Fatalf("bolt and mem differ: %v, %v", got, want)
	}
}
