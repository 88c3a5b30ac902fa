package journal

import (
	"errors"
	"fmt"
	"github.com/zlayer/overlayd/tools/testtemp"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestMeasureLargeJournal measures Open, the page check and Verify on a
// large journal: JOURNAL_MEASURE_EVENTS=1000000 go test ./journal -run
// TestMeasureLargeJournal -v. Payloads are the size of the benchmark
// generator's (tools/bench/gen.go, whose journal of 1M events is 210 MiB);
// this test's file of 1M events is 237 MiB (BENCHMARKS.md).
// JOURNAL_MEASURE_DIR keeps the file between runs.
func TestMeasureLargeJournal(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("JOURNAL_MEASURE_EVENTS"))
	if n == 0 {
		t.Skip("set JOURNAL_MEASURE_EVENTS (e.g. 1000000) to measure")
	}
	dir := os.Getenv("JOURNAL_MEASURE_DIR")
	if dir == "" {
		dir = testtemp.Dir(t)
	}
	path := filepath.Join(dir, FileName)
	if _, err := os.Stat(path); err != nil {
		start := time.Now()
		s, err := Open(dir, Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		for done := 0; done < n; {
			k := min(20000, n-done)
			recs := make([]Record, k)
			for i := range recs {
				j := done + i
				recs[i] = Record{Type: "dns_registered", Version: 1, Cause: Cause{Op: "register_dns", RequestID: uint64(j)},
					Payload: []byte(fmt.Sprintf(`{"name":"task-%d.svc%d.bench.local","ip":"10.64.%d.%d"}`, j, j%8, (j>>8)&255, j&255))}
			}
			if _, err := s.Append(recs).Wait(); err != nil {
				t.Fatal(err)
			}
			done += k
		}
		s.Close()
		t.Logf("generated %d events in %v", n, time.Since(start).Round(time.Millisecond))
	}
	fi, _ := os.Stat(path)
	t.Logf("file: %d events, %.1f MiB", n, float64(fi.Size())/(1<<20))
	timeIt := func(what string, fn func() error) {
		t.Helper()
		start := time.Now()
		if err := fn(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%-44s %v", what, time.Since(start).Round(100*time.Microsecond))
	}
	for round := 0; round < 2; round++ {
		var s *BoltStore
		timeIt("Open (writable; includes the quick walk)", func() (err error) { s, err = Open(dir, Options{}); return })
		timeIt("quick walk alone (what Open adds)", func() error {
			_, p, err := checkPath(path, false)
			if len(p) > 0 {
				return fmt.Errorf("%v", p)
			}
			return err
		})
		timeIt("full walk alone (first half of Check)", func() error {
			_, p, err := checkPath(path, true)
			if len(p) > 0 {
				return fmt.Errorf("%v", p)
			}
			return err
		})
		timeIt("Check (full walk + bbolt Tx.Check)", s.Check)
		timeIt("Iterate(verify) of every event", func() error { return s.Iterate(0, true, func(*Envelope) error { return nil }) })
		timeIt("Verify (Check + chain)", func() error {
			rep, err := s.Verify()
			if err == nil && !rep.OK() {
				err = rep.Err()
			}
			return err
		})
		s.faultHook = func(op string) error {
			if op == "commit" {
				return errors.New("injected")
			}
			return nil
		}
		if _, err := s.Append([]Record{rec(0)}).Wait(); err == nil {
			t.Fatal("the injected failure did not fail the commit")
		}
		s.faultHook = nil
		timeIt("Recover (probe, reopen, Check, head, cut back)", s.Recover)
		s.Close()
	}
}
