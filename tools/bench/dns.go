//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/tools/netlab"
)

const dnsNames = 1000

// benchDNS: queries per second and latency for overlay names, from 1 and
// 64 concurrent clients on the node's loopback, against a bare miekg/dns
// server answering the same names from a static map (tools/bench/cmd/dnsbare),
// both in the same namespace and the same run.
func benchDNS(tmp string) {
	fmt.Println("## DNS (1-node netlab, clients on the node's loopback)")
	fmt.Println()
	if !netlab.Root() {
		fmt.Println("Skipped: needs root (network namespaces).")
		fmt.Println()
		return
	}
	bare := filepath.Join(tmp, "dnsbare")
	if out, err := exec.Command("go", "build", "-o", bare, "./tools/bench/cmd/dnsbare").CombinedOutput(); err != nil {
		fatalf("build dnsbare: %v\n%s", err, out)
	}
	lab, err := netlab.New(1, netlab.Options{Daemon: daemonBin, Dir: filepath.Join(tmp, "dns")})
	check(err)
	labs["dns"] = lab
	defer func() { lab.Close(); delete(labs, "dns") }()
	nd := lab.Nodes[0]
	nd.Args = []string{"--dns-listen", "127.0.0.1:53"}
	check(nd.Start())
	ctx := context.Background()
	c, err := nd.Client(nil)
	check(err)
	defer c.Close()
	_, err = c.Call(ctx, ipc.SetupGlobalOverlay{Deployment: "bench", InstanceID: "1", ClusterCIDR: "10.200.0.0/16", WgPort: netlab.Port})
	check(err)
	for i := 0; i < dnsNames; i++ {
		_, err := c.Call(ctx, ipc.RegisterDNS{Name: fmt.Sprintf("svc-%d.bench.local", i),
			IP: ipc.Addr{Addr: netip.AddrFrom4([4]byte{10, 201, byte(i / 256), byte(i % 256)})}})
		check(err)
	}
	cmd := nd.Command(context.Background(), bare, "-addr", "127.0.0.2:53", "-names", fmt.Sprint(dnsNames))
	out, err := cmd.StdoutPipe()
	check(err)
	track(cmd)
	check(cmd.Start())
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		fatalf("dnsbare did not start: %q %v", line, err)
	}

	type point struct {
		qps      float64
		p50, p99 time.Duration
		errs     int
	}
	res := map[string]map[int]point{"overlayd": {}, "bare": {}}
	servers := map[string]string{"overlayd": "127.0.0.1:53", "bare": "127.0.0.2:53"}
	for _, conc := range []int{1, 64} {
		order := []string{"bare", "overlayd"}
		if conc == 64 {
			order = []string{"overlayd", "bare"}
		}
		for _, s := range order {
			qps, lat, errs := dnsLoad(nd.NetnsPath(), servers[s], conc, *duration)
			res[s][conc] = point{qps, pct(lat, 50), pct(lat, 99), errs}
		}
	}
	fmt.Printf("%d names; each client has its own UDP socket and one query in flight; %v per point.\n\n", dnsNames, *duration)
	fmt.Println("| clients | server | queries/s | p50 | p99 | errors |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, conc := range []int{1, 64} {
		for _, s := range []string{"overlayd", "bare"} {
			p := res[s][conc]
			name := "overlayd (`--dns-listen 127.0.0.1:53`)"
			if s == "bare" {
				name = "baseline: bare miekg/dns, static map"
			}
			fmt.Printf("| %d | %s | %.0f | %v | %v | %d |\n", conc, name, p.qps, p.p50.Round(time.Microsecond), p.p99.Round(time.Microsecond), p.errs)
		}
		fmt.Printf("| %d | ratio overlayd / baseline | %.2f× | | | |\n", conc, res["overlayd"][conc].qps/res["bare"][conc].qps)
	}
	fmt.Println()
}

func pct(lat []time.Duration, p int) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat[(len(lat)-1)*p/100]
}

// dnsLoad runs conc clients against server for d: each sends an A query for
// one of the names, waits for the answer (checking id, NOERROR and one
// answer from the header alone, to leave the CPU to the servers), repeats.
func dnsLoad(nsPath, server string, conc int, d time.Duration) (float64, []time.Duration, int) {
	conns := make([]net.Conn, conc)
	check(netlab.InNetns(nsPath, func() error {
		for i := range conns {
			var err error
			if conns[i], err = net.Dial("udp", server); err != nil {
				return err
			}
		}
		return nil
	}))
	queries := make([][]byte, dnsNames)
	for i := range queries {
		q := new(mdns.Msg)
		q.SetQuestion(fmt.Sprintf("svc-%d.bench.local.", i), mdns.TypeA)
		b, err := q.Pack()
		check(err)
		queries[i] = b
	}
	var mu sync.Mutex
	var all []time.Duration
	total, errs := 0, 0
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func(w int, conn net.Conn) {
			defer wg.Done()
			defer conn.Close()
			buf := make([]byte, 1500)
			q := make([]byte, 0, 128)
			lat := make([]time.Duration, 0, 1<<16)
			n, e := 0, 0
			id := uint16(w * 1000)
			for i := w; time.Now().Before(deadline); i++ {
				id++
				q = append(q[:0], queries[i%dnsNames]...)
				binary.BigEndian.PutUint16(q, id)
				t0 := time.Now()
				conn.SetDeadline(t0.Add(time.Second))
				if _, err := conn.Write(q); err != nil {
					e++
					continue
				}
				for {
					k, err := conn.Read(buf)
					if err != nil {
						e++
						break
					}
					if k < 12 || binary.BigEndian.Uint16(buf) != id {
						continue // a late answer to an earlier query
					}
					if buf[3]&0x0f != 0 || binary.BigEndian.Uint16(buf[6:]) != 1 {
						e++
					} else {
						n++
						lat = append(lat, time.Since(t0))
					}
					break
				}
			}
			mu.Lock()
			all = append(all, lat...)
			total += n
			errs += e
			mu.Unlock()
		}(w, conns[w])
	}
	wg.Wait()
	return float64(total) / time.Since(start).Seconds(), all, errs
}
