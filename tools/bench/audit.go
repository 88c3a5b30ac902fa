//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// benchAudit measures overlayctl's queries on a 1M-event journal, each
// beside the same query answered by a full scan (overlayctl --scan) in the
// same run, then compaction at event 900,000.
func benchAudit(tmp string) {
	const total = 1_000_000
	fmt.Println("## Audit queries on a 1M-event journal")
	fmt.Println()
	ctl := filepath.Join(tmp, "overlayctl")
	out, err := exec.Command("go", "build", "-o", ctl, "./cmd/overlayctl").CombinedOutput()
	if err != nil {
		fatalf("build overlayctl: %v\n%s", err, out)
	}
	dir := filepath.Join(tmp, "audit")
	g, err := newGenerator(dir)
	check(err)
	start := time.Now()
	check(g.extend(total, 20000))
	gen := time.Since(start)
	db := filepath.Join(dir, "overlayd", "journal.db")
	fiBefore, _ := os.Stat(db)

	// The upgrade: a daemon of this build boots on a journal written
	// without indexes or kept states, indexes it and keeps past states in
	// the background while it serves.
	p := startDaemon(dir)
	ready := p.ready()
	indexed := waitLog(p, "journal: index complete", 10*time.Minute)
	kept := waitLog(p, "kept past states", 10*time.Minute)
	p.stop()
	fiAfter, _ := os.Stat(db)
	fmt.Printf("Journal generated in %s (%d events, %.0f MiB). The first boot of this build on it answered in %s and, in the background, indexed it in %s (from process start) and kept past states by %s; the file is then %.0f MiB.\n\n",
		gen.Round(time.Second), total, mibOf(fiBefore.Size()), ms(ready), indexed.Round(10*time.Millisecond), kept.Round(10*time.Millisecond), mibOf(fiAfter.Size()))

	lastOut := map[string][]byte{} // the last output of each command (without --scan)
	run := func(args ...string) time.Duration {
		cmd := exec.Command(ctl, append([]string{"--data-dir", dir}, args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		t0 := time.Now()
		if err := cmd.Run(); err != nil {
			fatalf("overlayctl %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
		}
		took := time.Since(t0)
		lastOut[strings.Join(args, " ")] = stdout.Bytes()
		return took
	}
	// events counts the events of a JSON array answer, and checks that
	// the indexed and the scanning answers are the same.
	events := func(args ...string) int {
		a, b := lastOut[strings.Join(args, " ")], lastOut["--scan "+strings.Join(args, " ")]
		if !bytes.Equal(a, b) {
			fatalf("overlayctl %s: the indexed and the scanning answers differ", strings.Join(args, " "))
		}
		var evs []json.RawMessage
		check(json.Unmarshal(a, &evs))
		return len(evs)
	}
	// median of n runs, index and scan alternating.
	pair := func(n int, args ...string) (idx, scan time.Duration) {
		var a, b []time.Duration
		for i := 0; i < n; i++ {
			a = append(a, run(args...))
			b = append(b, run(append([]string{"--scan"}, args...)...))
		}
		return median(a), median(b)
	}
	fmt.Println("Wall time of the `overlayctl` process (start, open the file read-only, answer, exit), median of 5, with the daemon stopped; the baseline is the same command with `--scan` (the same engine reading every event instead of the index), alternating in the same run.")
	fmt.Println()
	fmt.Println("| query | target | indexed | full scan (baseline) |")
	fmt.Println("|---|---|---|---|")
	hist := []string{"history", "10.64.0.10", "-o", "json"}
	hi, hs := pair(5, hist...)
	fmt.Printf("| `history 10.64.0.10` (%d events) | ≤ 200 ms | %s | %s |\n", events(hist...), ms(hi), ms(hs))
	lsT := []string{"journal", "ls", "--type", "peer_removed", "--limit", "100", "-o", "json"}
	li, ls := pair(5, lsT...)
	fmt.Printf("| `journal ls --type peer_removed --limit 100` (%d events) | ≤ 100 ms | %s | %s |\n", events(lsT...), ms(li), ms(ls))
	lsR := []string{"journal", "ls", "--type", "peer_removed", "--limit", "100", "--reverse", "-o", "json"}
	li, ls = pair(5, lsR...)
	fmt.Printf("| `journal ls --type peer_removed --limit 100 --reverse` (%d events) | ≤ 100 ms | %s | %s |\n", events(lsR...), ms(li), ms(ls))
	r := rand.New(rand.NewSource(1))
	var worstI, worstS time.Duration
	var pts []string
	for i := 0; i < 5; i++ {
		seq := 1 + r.Intn(total)
		pts = append(pts, fmt.Sprint(seq))
		args := []string{"state", "--at", fmt.Sprint(seq), "-o", "json"}
		a, b := pair(1, args...)
		if !bytes.Equal(lastOut[strings.Join(args, " ")], lastOut["--scan "+strings.Join(args, " ")]) {
			fatalf("state --at %d: the answers from a kept state and from a full replay differ", seq)
		}
		worstI, worstS = max(worstI, a), max(worstS, b)
	}
	fmt.Printf("| `state --at` (worst of 5 random points: %s) | ≤ 1 s | %s | %s |\n", strings.Join(pts, ", "), ms(worstI), ms(worstS))
	v := median([]time.Duration{run("journal", "verify", "-o", "json"), run("journal", "verify", "-o", "json"), run("journal", "verify", "-o", "json")})
	fmt.Printf("| `journal verify` (pages, chain, full replay, invariants, snapshot) | ≥ 200,000 events/s | %s: %.0f events/s | — |\n", ms(v), float64(total)/v.Seconds())
	fmt.Println()

	// Compaction at 900,000, offline, on a copy.
	cdir := filepath.Join(tmp, "audit-compact")
	check(exec.Command("cp", "-a", dir, cdir).Run())
	before := bootMedian(cdir, nil)
	t0 := time.Now()
	cmd := exec.Command(ctl, "--data-dir", cdir, "journal", "compact", "--before", "900001")
	if out, err := cmd.CombinedOutput(); err != nil {
		fatalf("compact: %v\n%s", err, out)
	}
	took := time.Since(t0)
	cdb := filepath.Join(cdir, "overlayd", "journal.db")
	fiC, _ := os.Stat(cdb)
	after := bootMedian(cdir, nil)
	vc := run("--data-dir", cdir, "journal", "verify", "-o", "json")
	fmt.Println("Compaction of the same journal at event 900,000 (offline `overlayctl journal compact --before 900001`: events 1..900,000 sealed into an archive and replaced by a checkpoint), then boots (median of 3, killed after each) and a verify:")
	fmt.Println()
	fmt.Println("| | before | after |")
	fmt.Println("|---|---|---|")
	fmt.Printf("| journal file | %.0f MiB | %.0f MiB |\n", mibOf(fiAfter.Size()), mibOf(fiC.Size()))
	fmt.Printf("| boot: load | %s | %s |\n", ms(before.load), ms(after.load))
	fmt.Printf("| boot: ready | %s | %s |\n", ms(before.ready), ms(after.ready))
	fmt.Printf("| compaction | | %s |\n", took.Round(10*time.Millisecond))
	fmt.Printf("| `journal verify` from the checkpoint | | %s |\n", ms(vc))
	fmt.Println()
	if !*keep {
		os.RemoveAll(dir)
		os.RemoveAll(cdir)
	}
}

func median(d []time.Duration) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2]
}

// waitLog waits for a line of the daemon's log containing s and returns
// the time since the daemon started.
func waitLog(p *proc, s string, timeout time.Duration) time.Duration {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(p.logPath)
		if bytes.Contains(b, []byte(s)) {
			return time.Since(p.started)
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(p.logPath)
	fatalf("no %q in the daemon's log after %s:\n%s", s, timeout, b)
	return 0
}

func mibOf(bytes int64) float64 { return float64(bytes) / (1 << 20) }
