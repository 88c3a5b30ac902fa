//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// benchBoot: time to a serving daemon on a journal of 100k and 1M events,
// with a full replay, with a snapshot at the head (after a clean stop), and
// with a snapshot followed by the longest tail a crash can leave (the
// snapshot interval, 10,000 events).
func benchBoot(tmp string) {
	fmt.Println("## Boot time")
	fmt.Println()
	fmt.Printf("A generated journal of a busy node (addresses allocated and released, DNS names registered and removed, peers added and removed; about 20,000 live addresses, 20,000 names and 2,000 peers at the end). \"load\" is the daemon's own measure of snapshot load + replay (with hash-chain verification); \"ready\" is from process start until it answers `status` over its socket. Median of %d boots.\n\n", *bootRuns)
	fmt.Println("| events | full replay: load | ready | snapshot at head: load | ready | snapshot + 10,000-event tail: load | ready | journal size |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, total := range []int{100_000, 1_000_000} {
		dir := filepath.Join(tmp, fmt.Sprintf("boot-%d", total))
		g, err := newGenerator(dir)
		check(err)
		check(g.extend(total, 20000))
		snap := filepath.Join(dir, "overlayd", "journal.db")

		full := bootMedian(dir, func() { check(dropSnapshot(snap)) }, "--snapshot-every", fmt.Sprint(2*total))
		// One boot that writes the snapshot, then a clean stop that writes
		// it at the head.
		p := startDaemon(dir)
		p.ready()
		p.stop()
		head := bootMedian(dir, nil)
		check(g.extend(total+10_000, 20000))
		tail := bootMedian(dir, nil, "--snapshot-every", fmt.Sprint(2*total))
		fi, _ := os.Stat(snap)
		fmt.Printf("| %d | %s | %s | %s | %s | %s | %s | %.0f MiB |\n", total, ms(full.load), ms(full.ready), ms(head.load), ms(head.ready),
			ms(tail.load), ms(tail.ready), float64(fi.Size())/(1<<20))
		if !*keep {
			os.RemoveAll(dir)
		}
	}
	fmt.Println()
}

type bootTime struct{ load, ready time.Duration }

// bootMedian boots the daemon on dir *bootRuns times (calling before each
// time) and returns the median times. The daemon is killed after each boot
// so that it leaves the journal exactly as it found it.
func bootMedian(dir string, before func(), args ...string) bootTime {
	var loads, readies []time.Duration
	for i := 0; i < *bootRuns; i++ {
		if before != nil {
			before()
		}
		p := startDaemon(dir, args...)
		readies = append(readies, p.ready())
		loads = append(loads, p.loadTook())
		p.cmd.Process.Kill()
		<-p.exited
	}
	med := func(d []time.Duration) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	return bootTime{load: med(loads), ready: med(readies)}
}
