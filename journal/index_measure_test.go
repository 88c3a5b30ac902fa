package journal

import (
	"github.com/zlayer/overlayd/tools/testtemp"
	"os"
	"strconv"
	"testing"
	"time"
)

// TestMeasureMigration: a journal of INDEX_MEASURE_EVENTS events (e.g.
// 1000000) written before indexes is opened with an Indexer: how long the
// Open takes, when the index is Ready (reads answer, scanning what is left
// past it) and when it is complete, and commits meanwhile.
func TestMeasureMigration(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("INDEX_MEASURE_EVENTS"))
	if n == 0 {
		t.Skip("set INDEX_MEASURE_EVENTS (e.g. 1000000) to measure")
	}
	dir := testtemp.Dir(t)
	s, err := Open(dir, Options{NoSync: true, MaxBatch: 20000})
	if err != nil {
		t.Fatal(err)
	}
	const chunk = 20000
	for i := 0; i < n; i += chunk {
		recs := make([]Record, min(chunk, n-i))
		for j := range recs {
			recs[j] = benchRecord(i + j)
		}
		if _, err := s.Append(recs).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	stripIndex(t, dir)

	start := time.Now()
	s, err = Open(dir, Options{Indexer: benchIndexer, IndexVersion: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t.Logf("open of %d unindexed events: %v", n, time.Since(start).Round(time.Millisecond))
	var ready time.Duration
	var commits, worst time.Duration
	k := 0
	for st := s.IndexStatus(); st.Through != headOf(s); st = s.IndexStatus() {
		if st.Ready && ready == 0 {
			ready = time.Since(start)
		}
		c := time.Now()
		if _, err := s.Append([]Record{benchRecord(n + k)}).Wait(); err != nil {
			t.Fatal(err)
		}
		d := time.Since(c)
		commits += d
		worst = max(worst, d)
		k++
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("ready after %v, complete after %v; %d commits meanwhile: mean %v, worst %v",
		ready.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), k, (commits / time.Duration(max(k, 1))).Round(time.Microsecond), worst.Round(time.Microsecond))
}
