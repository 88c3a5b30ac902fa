package journal

import (
	"fmt"
	"github.com/zlayer/overlayd/tools/testtemp"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// benchIndexer names three objects per event, as projections.Terms does
// for an address allocation (the address, the service, the container).
func benchIndexer(typ string, ver uint16, payload []byte) []string {
	n, _ := strconv.Atoi(string(payload))
	return []string{
		fmt.Sprintf("ip:10.%d.%d.%d", n%4, (n/4)%256, (n/1024)%8),
		fmt.Sprintf("service:svc%d", n%8),
		fmt.Sprintf("container:c%d", n%50000),
	}
}

// benchRecord is event n: one of four common types, or every 1000th a
// rare one.
func benchRecord(n int) Record {
	typ := []string{"ip_allocated", "ip_released", "dns_registered", "peer_added"}[n%4]
	if n%1000 == 999 {
		typ = "pool_resized"
	}
	return Record{Type: typ, Version: 1,
		Cause: Cause{Op: "allocate_ip", RequestID: uint64(n)}, Payload: []byte(strconv.Itoa(n))}
}

// BenchmarkGroupCommit: 32 clients append one event each and wait, as the
// daemon's connections do; on a journal already holding 100,000 events.
// ns/op is per event. "none" has no Indexer (the built-in terms only),
// "3terms" benchIndexer.
func BenchmarkGroupCommit(b *testing.B) {
	for _, tc := range []struct {
		name string
		ix   func(string, uint16, []byte) []string
	}{{"none", nil}, {"3terms", benchIndexer}} {
		for _, nosync := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/nosync=%v", tc.name, nosync), func(b *testing.B) {
				dir := testtemp.Dir(b)
				s, err := Open(dir, Options{Indexer: tc.ix, IndexVersion: 1, NoSync: true})
				if err != nil {
					b.Fatal(err)
				}
				fillBench(b, s, 100000)
				s.Close()
				s, err = Open(dir, Options{Indexer: tc.ix, IndexVersion: 1, NoSync: nosync})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				for st := s.IndexStatus(); st.Through != headOf(s); st = s.IndexStatus() {
					time.Sleep(10 * time.Millisecond) // the fill's index: not what is measured
				}
				b.ResetTimer()
				var wg sync.WaitGroup
				per := (b.N + 31) / 32
				for c := range 32 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := range per {
							if _, err := s.Append([]Record{benchRecord(c*per + i)}).Wait(); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.StopTimer()
				st := s.Stats()
				b.ReportMetric(float64(st.Records)/float64(max(st.Commits, 1)), "events/commit")
			})
		}
	}
}

func fillBench(b *testing.B, s *BoltStore, n int) {
	b.Helper()
	const chunk = 20000
	for i := 0; i < n; i += chunk {
		recs := make([]Record, min(chunk, n-i))
		for j := range recs {
			recs[j] = benchRecord(i + j)
		}
		if _, err := s.Append(recs).Wait(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPostings1M: on a journal of 1,000,000 events (OVERLAYD_BENCH_EVENTS
// changes it), the events of one address by the index, against the same
// question by a full scan (Iterate, the terms of each event); and the 100
// newest events of a rare type (one in 1000), by the index and by a scan
// backwards; and a lookup by time.
func BenchmarkPostings1M(b *testing.B) {
	n := 1_000_000
	if v := os.Getenv("OVERLAYD_BENCH_EVENTS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	dir := testtemp.Dir(b)
	s, err := Open(dir, Options{Indexer: benchIndexer, IndexVersion: 1, NoSync: true, MaxBatch: 20000})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	fillBench(b, s, n)
	for st := s.IndexStatus(); st.Through != headOf(s); st = s.IndexStatus() {
		time.Sleep(10 * time.Millisecond)
	}
	b.Logf("%d events written and indexed in %v", n, time.Since(start).Round(time.Millisecond))
	s.Close()
	s, err = Open(dir, Options{Indexer: benchIndexer, IndexVersion: 1, ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if fi, err := os.Stat(s.Path()); err == nil {
		b.Logf("%d events, file %d MiB", n, fi.Size()>>20)
	}
	s.view("stats", func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketEvents, bucketIndex} {
			st := tx.Bucket(name).Stats()
			b.Logf("bucket %s: %d keys, %d MiB of pages (%d MiB in use)", name, st.KeyN,
				(st.BranchAlloc+st.LeafAlloc)>>20, (st.BranchInuse+st.LeafInuse)>>20)
		}
		return nil
	})
	term := benchIndexer("", 0, []byte("12345"))[0]
	var want int
	b.Run("ip/index", func(b *testing.B) {
		for range b.N {
			got := 0
			if err := s.Postings(term, 0, 0, false, func(seq uint64) error {
				_, err := s.Get(seq) // what history does: read each event
				got++
				return err
			}); err != nil {
				b.Fatal(err)
			}
			want = got
		}
		b.ReportMetric(float64(want), "events")
	})
	b.Run("ip/scan", func(b *testing.B) {
		for range b.N {
			got := 0
			if err := s.Iterate(0, false, func(e *Envelope) error {
				for _, t := range benchIndexer(e.Type, e.Version, e.Payload) {
					if t == term {
						got++
					}
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			if got != want {
				b.Fatalf("scan found %d events, the index %d", got, want)
			}
		}
	})
	b.Run("type-limit100/index", func(b *testing.B) {
		for range b.N {
			got := 0
			stop := fmt.Errorf("enough")
			err := s.Postings(TermType+"pool_resized", 0, 0, true, func(seq uint64) error {
				if _, err := s.Get(seq); err != nil {
					return err
				}
				if got++; got == 100 {
					return stop
				}
				return nil
			})
			if err != nil && err != stop {
				b.Fatal(err)
			}
		}
	})
	b.Run("type-limit100/scan", func(b *testing.B) {
		for range b.N {
			got := 0
			stop := fmt.Errorf("enough")
			err := s.Range(0, 0, true, func(e *Envelope) error {
				if e.Type == "pool_resized" {
					if got++; got == 100 {
						return stop
					}
				}
				return nil
			})
			if err != nil && err != stop {
				b.Fatal(err)
			}
		}
	})
	b.Run("SeqAtTime", func(b *testing.B) {
		e, _ := s.Get(uint64(n / 3))
		for range b.N {
			if _, err := s.SeqAtTime(e.Time); err != nil {
				b.Fatal(err)
			}
		}
	})
}
