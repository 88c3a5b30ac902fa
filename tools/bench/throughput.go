//go:build linux

package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/zlayer/overlayd/ipc"
)

type point struct {
	ops      int
	elapsed  time.Duration
	p50, p99 time.Duration
}

func (p point) rate() float64 { return float64(p.ops) / p.elapsed.Seconds() }

func summarize(lat []time.Duration, elapsed time.Duration) point {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p := point{ops: len(lat), elapsed: elapsed}
	if len(lat) > 0 {
		p.p50 = lat[len(lat)*50/100]
		p.p99 = lat[len(lat)*99/100]
	}
	return p
}

// run calls op from n goroutines for d (after a short warm-up) and
// returns the rate and latency percentiles.
func run(n int, d time.Duration, op func(worker, i int) error) point {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var all []time.Duration
	warm := time.Now().Add(300 * time.Millisecond)
	end := warm.Add(d)
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var lat []time.Duration
			for i := 0; ; i++ {
				t0 := time.Now()
				if t0.After(end) {
					break
				}
				if err := op(w, i); err != nil {
					fatalf("worker %d: %v", w, err)
				}
				if t0.After(warm) {
					lat = append(lat, time.Since(t0))
				}
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	return summarize(all, d)
}

// benchThroughput: durable mutating commands through the daemon's socket
// against the baseline of one fsync'd bbolt transaction per command.
func benchThroughput(tmp string) {
	dir := filepath.Join(tmp, "throughput")
	p := startDaemon(dir, daemonArgs...)
	p.ready()
	setup := p.client()
	_, err := setup.Call(context.Background(), ipc.SetupGlobalOverlay{Deployment: "bench", InstanceID: "1", ClusterCIDR: "10.0.0.0/8", WgPort: 51820})
	check(err)
	setup.Close()

	db, err := bolt.Open(filepath.Join(tmp, "baseline.db"), 0o600, nil)
	check(err)
	check(db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucketIfNotExists([]byte("events")); return err }))
	payload := make([]byte, 200) // about one journaled register_dns envelope
	var seq uint64
	var seqMu sync.Mutex
	// baseline commits one fsync'd bbolt transaction per command.
	baseline := func(w, i int) error {
		return db.Update(func(tx *bolt.Tx) error {
			seqMu.Lock()
			seq++
			k := binary.BigEndian.AppendUint64(nil, seq)
			seqMu.Unlock()
			return tx.Bucket([]byte("events")).Put(k, payload)
		})
	}

	fmt.Println("## Durable mutating commands per second")
	fmt.Println()
	fmt.Printf("Each client alternates `register_dns` of a new name and `unregister_dns` of one it registered 200 commands before (each a journaled event; each client holds about 100 names, so the state stays bounded), waiting for each answer, for %s per point. The daemon runs as its own process and is reached through its socket. Baseline: the same number of goroutines, each committing one fsync'd bbolt transaction per command (no IPC at all).\n\n", *duration)
	var cpuNotes []string
	fmt.Println("| clients | overlayd cmd/s | p50 | p99 | baseline tx/s | p50 | p99 | ratio |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, n := range []int{1, 8, 64} {
		clients := make([]*ipc.Client, n)
		for i := range clients {
			clients[i] = p.client()
		}
		d0, s0 := p.cpu(), selfCPU()
		ours := run(n, *duration, func(w, i int) error {
			// Register a new name, and every other command drop the one
			// registered 200 commands ago: each client keeps 100 names, so
			// the state stays the size of a busy node's.
			var req ipc.Request = ipc.RegisterDNS{Name: fmt.Sprintf("c%d-%d-%d.bench.local", n, w, i), IP: ipc.AddrOf(addr(w, i))}
			if i%2 == 1 && i >= 200 {
				req = ipc.UnregisterDNS{Name: fmt.Sprintf("c%d-%d-%d.bench.local", n, w, i-201)}
			}
			_, err := clients[w].Call(context.Background(), req)
			return err
		})
		dCPU, sCPU := p.cpu()-d0, selfCPU()-s0
		cpuNotes = append(cpuNotes, fmt.Sprintf("%d clients: daemon %.0f µs, client process %.0f µs of CPU per command", n,
			float64(dCPU.Microseconds())/float64(ours.ops), float64(sCPU.Microseconds())/float64(ours.ops)))
		for _, c := range clients {
			c.Close()
		}
		base := run(n, *duration, baseline)
		fmt.Printf("| %d | %.0f | %s | %s | %.0f | %s | %s | %.1f× |\n", n, ours.rate(), ms(ours.p50), ms(ours.p99),
			base.rate(), ms(base.p50), ms(base.p99), ours.rate()/base.rate())
	}
	// The same at 64 clients with a state that only grows: register_dns
	// only, so the daemon ends up holding every name (hundreds of
	// thousands): the garbage collector then scans a much larger heap.
	{
		const n = 64
		clients := make([]*ipc.Client, n)
		for i := range clients {
			clients[i] = p.client()
		}
		grow := run(n, *duration, func(w, i int) error {
			_, err := clients[w].Call(context.Background(), ipc.RegisterDNS{Name: fmt.Sprintf("g%d-%d.bench.local", w, i), IP: ipc.AddrOf(addr(w, i))})
			return err
		})
		for _, c := range clients {
			c.Close()
		}
		base := run(n, *duration, baseline)
		c := p.client()
		_, state, err := ipc.FetchState(context.Background(), c)
		check(err)
		c.Close()
		fmt.Printf("| %d, growing state (%d names held at the end) | %.0f | %s | %s | %.0f | %s | %s | %.1f× |\n", n, countNames(state),
			grow.rate(), ms(grow.p50), ms(grow.p99), base.rate(), ms(base.p50), ms(base.p99), grow.rate()/base.rate())
	}
	fmt.Println()
	fmt.Println("CPU (user+system, over the whole measurement including warm-up; daemon and clients share the 2 cores): " + strings.Join(cpuNotes, "; ") + ".")
	fmt.Println()
	db.Close()
	p.stop()
	if !*keep {
		os.RemoveAll(dir)
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func countNames(state []byte) int {
	var st struct {
		DNS map[string]json.RawMessage `json:"dns"`
	}
	check(json.Unmarshal(state, &st))
	return len(st.DNS)
}
