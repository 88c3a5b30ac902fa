//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/zlayer/overlayd/ipc"
)

// benchRSS: the daemon's resident memory holding 100,000 live allocations,
// against the same daemon idle (baseline), and after a restart on them.
func benchRSS(tmp string) {
	const want = 100_000
	dir := filepath.Join(tmp, "rss")
	p := startDaemon(dir)
	p.ready()
	c := p.client()
	_, err := c.Call(context.Background(), ipc.SetupGlobalOverlay{Deployment: "bench", InstanceID: "1", ClusterCIDR: "10.0.0.0/8", SliceCIDR: strp("10.64.0.0/14"), WgPort: 51820})
	check(err)
	c.Close()
	idle := p.mem()
	var done atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := p.client()
			defer c.Close()
			for done.Add(1) <= want {
				if _, err := c.Call(context.Background(), ipc.AllocateIP{JoinGlobal: true}); err != nil {
					fatalf("allocate_ip: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	full := p.mem()
	p.stop()
	q := startDaemon(dir)
	q.ready()
	rebooted := q.mem()
	q.stop()
	fi, _ := os.Stat(filepath.Join(dir, "overlayd", "journal.db"))
	fmt.Println("## Memory")
	fmt.Println()
	fmt.Println("Resident set (VmRSS, and the peak VmHWM) of the daemon process, holding 100,000 live addresses allocated by 64 clients with `allocate_ip` (each one a journaled reservation). Baseline: the same daemon right after `setup_global_overlay`, before any allocation.")
	fmt.Println()
	fmt.Println("| daemon | RSS | of which anonymous | of which file (journal mmap) | peak RSS |")
	fmt.Println("|---|---|---|---|---|")
	row := func(name string, m memKiB) {
		fmt.Printf("| %s | %.1f MiB | %.1f MiB | %.1f MiB | %.1f MiB |\n", name, mib(m.rss), mib(m.anon), mib(m.file), mib(m.hwm))
	}
	row("baseline: idle, global overlay set up", idle)
	row("holding 100,000 live allocations", full)
	row("restarted on them (from the snapshot)", rebooted)
	fmt.Printf("\nJournal file: %.0f MiB.\n\n", float64(fi.Size())/(1<<20))
	if !*keep {
		os.RemoveAll(dir)
	}
}

func strp(s string) *string { return &s }

func mib(kib int) float64 { return float64(kib) / 1024 }
