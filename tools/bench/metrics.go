//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/tools/netlab"
)

// metricsAddr is where the "on" daemons serve their metrics (each in its
// own namespace as root, so one port does for all).
const metricsAddr = "127.0.0.1:19464"

// metricsRounds is how many times each side is measured, interleaved.
const metricsRounds = 3

// scraper fetches /metrics every second until stop, from inside the
// namespace at nsPath ("" for the current one), as Prometheus would.
type scraper struct {
	stop     chan struct{}
	done     chan struct{}
	n, fails atomic.Int64
	bytes    atomic.Int64
}

func startScraper(nsPath, addr string) *scraper {
	s := &scraper{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			if n, err := scrapeOnce(nsPath, addr); err != nil {
				s.fails.Add(1)
			} else {
				s.n.Add(1)
				s.bytes.Store(int64(n))
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *scraper) close() { close(s.stop); <-s.done }

// scrapeOnce GETs /metrics and returns the body's size.
func scrapeOnce(nsPath, addr string) (int, error) {
	var conn net.Conn
	dial := func() (err error) { conn, err = net.DialTimeout("tcp", addr, 2*time.Second); return err }
	var err error
	if nsPath != "" {
		err = netlab.InNetns(nsPath, dial)
	} else {
		err = dial()
	}
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("/metrics: %s", resp.Status)
	}
	return len(b), err
}

// nsOf is the namespace a bench daemon on dataDir runs in ("" when not
// root).
func nsOf(dataDir string) string {
	if l := labs[dataDir]; l != nil {
		return l.Nodes[0].NetnsPath()
	}
	return ""
}

func medianRate(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func fmtRates(xs []float64) string {
	var parts []string
	for _, x := range xs {
		parts = append(parts, fmt.Sprintf("%.0f", x))
	}
	return strings.Join(parts, ", ")
}

// benchMetricsThroughput: durable commands per second at 64 clients, two
// daemons side by side, metrics off and on (scraped every second),
// measured in turn: off, on, off, on, ...
func benchMetricsThroughput(tmp string) {
	const n = 64
	fmt.Println("## Metrics cost: durable commands per second, metrics off and on")
	fmt.Println()
	offDir, onDir := filepath.Join(tmp, "metrics-off"), filepath.Join(tmp, "metrics-on")
	off := startDaemon(offDir, daemonArgs...)
	on := startDaemon(onDir, append([]string{"--metrics-listen", metricsAddr}, daemonArgs...)...)
	off.ready()
	on.ready()
	for _, p := range []*proc{off, on} {
		c := p.client()
		_, err := c.Call(context.Background(), ipc.SetupGlobalOverlay{Deployment: "bench", InstanceID: "1", ClusterCIDR: "10.0.0.0/8", WgPort: 51820})
		check(err)
		c.Close()
	}
	sc := startScraper(nsOf(onDir), metricsAddr)
	rates := map[string][]float64{}
	p99s := map[string][]time.Duration{}
	round := 0
	measure := func(name string, p *proc) {
		clients := make([]*ipc.Client, n)
		for i := range clients {
			clients[i] = p.client()
		}
		r := round
		pt := run(n, *duration, func(w, i int) error {
			var req ipc.Request = ipc.RegisterDNS{Name: fmt.Sprintf("m%d-%d-%d.bench.local", r, w, i), IP: ipc.AddrOf(addr(w, i))}
			if i%2 == 1 && i >= 200 {
				req = ipc.UnregisterDNS{Name: fmt.Sprintf("m%d-%d-%d.bench.local", r, w, i-201)}
			}
			_, err := clients[w].Call(context.Background(), req)
			return err
		})
		for _, c := range clients {
			c.Close()
		}
		rates[name] = append(rates[name], pt.rate())
		p99s[name] = append(p99s[name], pt.p99)
	}
	for round = 0; round < metricsRounds; round++ {
		measure("off", off)
		measure("on", on)
	}
	sc.close()
	off.stop()
	on.stop()
	fmt.Printf("%d clients, `register_dns`/`unregister_dns` as in the throughput table, %v per point; two daemons side by side, one with `--metrics-listen %s` scraped every second (%d scrapes of %d bytes, %d failed), measured in turn off, on, off, on … (%d rounds each).\n\n",
		n, *duration, metricsAddr, sc.n.Load(), sc.bytes.Load(), sc.fails.Load(), metricsRounds)
	fmt.Println("| metrics | cmd/s per round | median cmd/s | p99 per round |")
	fmt.Println("|---|---|---|---|")
	for _, name := range []string{"off", "on"} {
		var ps []string
		for _, d := range p99s[name] {
			ps = append(ps, ms(d))
		}
		fmt.Printf("| %s | %s | %.0f | %s |\n", name, fmtRates(rates[name]), medianRate(rates[name]), strings.Join(ps, ", "))
	}
	fmt.Printf("| ratio on / off | | %.3f | |\n\n", medianRate(rates["on"])/medianRate(rates["off"]))
}

// benchMetricsDNS: DNS queries per second from 64 clients, two one-node
// labs side by side, metrics off and on (scraped every second), measured
// in turn.
func benchMetricsDNS(tmp string) {
	const conc = 64
	fmt.Println("## Metrics cost: DNS queries per second, metrics off and on")
	fmt.Println()
	if !netlab.Root() {
		fmt.Println("Skipped: needs root (network namespaces).")
		fmt.Println()
		return
	}
	nodes := map[string]*netlab.Node{}
	for _, name := range []string{"off", "on"} {
		lab, err := netlab.New(1, netlab.Options{Daemon: daemonBin, Dir: filepath.Join(tmp, "dns-metrics-"+name)})
		check(err)
		labs["dns-metrics-"+name] = lab
		nd := lab.Nodes[0]
		nd.Args = []string{"--dns-listen", "127.0.0.1:53"}
		if name == "on" {
			nd.Args = append(nd.Args, "--metrics-listen", metricsAddr)
		}
		check(nd.Start())
		c, err := nd.Client(nil)
		check(err)
		ctx := context.Background()
		_, err = c.Call(ctx, ipc.SetupGlobalOverlay{Deployment: "bench", InstanceID: "1", ClusterCIDR: "10.200.0.0/16", WgPort: netlab.Port})
		check(err)
		for i := 0; i < dnsNames; i++ {
			_, err := c.Call(ctx, ipc.RegisterDNS{Name: fmt.Sprintf("svc-%d.bench.local", i),
				IP: ipc.Addr{Addr: netip.AddrFrom4([4]byte{10, 201, byte(i / 256), byte(i % 256)})}})
			check(err)
		}
		c.Close()
		nodes[name] = nd
	}
	defer func() {
		for _, name := range []string{"off", "on"} {
			labs["dns-metrics-"+name].Close()
			delete(labs, "dns-metrics-"+name)
		}
	}()
	sc := startScraper(nodes["on"].NetnsPath(), metricsAddr)
	qps := map[string][]float64{}
	p99s := map[string][]time.Duration{}
	errs := map[string]int{}
	var mu sync.Mutex
	for round := 0; round < metricsRounds; round++ {
		for _, name := range []string{"off", "on"} {
			q, lat, e := dnsLoad(nodes[name].NetnsPath(), "127.0.0.1:53", conc, *duration)
			mu.Lock()
			qps[name] = append(qps[name], q)
			p99s[name] = append(p99s[name], pct(lat, 99))
			errs[name] += e
			mu.Unlock()
		}
	}
	sc.close()
	fmt.Printf("%d names, %d clients on the node's loopback as in the DNS table, %v per point; two one-node labs side by side, one with `--metrics-listen %s` scraped every second (%d scrapes of %d bytes, %d failed), measured in turn off, on, off, on … (%d rounds each).\n\n",
		dnsNames, conc, *duration, metricsAddr, sc.n.Load(), sc.bytes.Load(), sc.fails.Load(), metricsRounds)
	fmt.Println("| metrics | queries/s per round | median queries/s | p99 per round | errors |")
	fmt.Println("|---|---|---|---|---|")
	for _, name := range []string{"off", "on"} {
		var ps []string
		for _, d := range p99s[name] {
			ps = append(ps, d.Round(time.Microsecond).String())
		}
		fmt.Printf("| %s | %s | %.0f | %s | %d |\n", name, fmtRates(qps[name]), medianRate(qps[name]), strings.Join(ps, ", "), errs[name])
	}
	fmt.Printf("| ratio on / off | | %.3f | | |\n\n", medianRate(qps["on"])/medianRate(qps["off"]))
}
