//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/tools/netlab"
)

// benchMesh: TCP throughput over the overlay between two daemons, against
// a bare pair of wireguard-go devices configured by hand and plain veth, on
// the same two-node topology; then add_peer latency and memory with 1,000
// peers of 4 AllowedIPs each on one device.
func benchMesh(tmp string) {
	fmt.Println("## WireGuard data plane (2-node netlab)")
	fmt.Println()
	if !netlab.Root() {
		fmt.Println("Skipped: needs root (network namespaces).")
		fmt.Println()
		return
	}
	bins := map[string]string{}
	for _, name := range []string{"tcpbench", "wgguest"} {
		bins[name] = filepath.Join(tmp, name)
		if out, err := exec.Command("go", "build", "-o", bins[name], "./tools/netlab/cmd/"+name).CombinedOutput(); err != nil {
			fatalf("build %s: %v\n%s", name, err, out)
		}
	}
	lab, err := netlab.New(2, netlab.Options{Daemon: daemonBin, Dir: filepath.Join(tmp, "mesh")})
	check(err)
	labs["mesh"] = lab // closed (with its daemons and helpers) on exit
	ctx := context.Background()
	infos, err := lab.Mesh(ctx, 25)
	check(err)
	a, b := lab.Nodes[0], lab.Nodes[1]

	// The bare pair: two wireguard-go devices, one per node, configured by
	// hand (wgguest with a written configuration), on port 51900.
	ka, _ := wgtypes.GeneratePrivateKey()
	kb, _ := wgtypes.GeneratePrivateKey()
	var helpers []*exec.Cmd
	defer func() {
		for _, h := range helpers {
			h.Process.Kill()
			h.Wait()
		}
		lab.Close()
		delete(labs, "mesh")
	}()
	bare := func(nd *netlab.Node, priv, peer wgtypes.Key, self, other string, peerNode *netlab.Node) {
		cfg := map[string]any{"overlay_ip": self, "prefix_len": 24, "private_key": priv.String(),
			"peers": []map[string]any{{"public_key": peer.PublicKey().String(), "endpoint": peerNode.Underlay.String() + ":51900",
				"allowed_ips": other + "/32", "persistent_keepalive_secs": 0}}}
		b, _ := json.Marshal(cfg)
		path := filepath.Join(tmp, fmt.Sprintf("bare%d.json", nd.Index))
		check(os.WriteFile(path, b, 0o600))
		cmd := track(nd.Command(ctx, bins["wgguest"], "-config", path, "-name", "wgbare0", "-listen-port", "51900"))
		out, _ := cmd.StdoutPipe()
		check(cmd.Start())
		helpers = append(helpers, cmd)
		if line, _ := bufio.NewReader(out).ReadString('\n'); strings.TrimSpace(line) != "up" {
			fatalf("bare device on node %d: %q", nd.Index, line)
		}
	}
	bare(a, ka, kb, "10.77.0.1", "10.77.0.2", b)
	bare(b, kb, ka, "10.77.0.2", "10.77.0.1", a)
	// Let both bare devices handshake.
	a.Run(ctx, "ping", "-c", "2", "-W", "2", "10.77.0.2")

	paths := []struct{ name, target string }{
		{"plain veth (the ceiling)", b.Underlay.String()},
		{"bare wireguard-go pair, configured by hand", "10.77.0.2"},
		{"overlay driven by the daemons", infos[1].NodeIP},
	}
	const runs = 3
	results := make([][]float64, len(paths))
	for r := 0; r < runs; r++ {
		for i, p := range paths {
			results[i] = append(results[i], tcpRate(ctx, bins["tcpbench"], a, b, p.target, 3*time.Second))
		}
	}
	med := func(xs []float64) float64 {
		s := append([]float64(nil), xs...)
		sort.Float64s(s)
		return s[len(s)/2]
	}
	fmt.Printf("One TCP stream from node 0 to node 1 for 3 s, %d runs per path interleaved; median (all runs). Daemons, bare devices and the TCP tools share the 2 cores.\n\n", runs)
	fmt.Println("| path | throughput | runs | vs bare pair |")
	fmt.Println("|---|---|---|---|")
	bareMed := med(results[1])
	for i, p := range paths {
		var all []string
		for _, x := range results[i] {
			all = append(all, fmt.Sprintf("%.2f", x/1e9))
		}
		fmt.Printf("| %s | %.2f Gbit/s | %s | %.2f× |\n", p.name, med(results[i])/1e9, strings.Join(all, ", "), med(results[i])/bareMed)
	}
	fmt.Println()

	// add_peer with 1,000 peers of 4 AllowedIPs each, on the device of a
	// fresh node that carried no traffic (a busy wireguard-go keeps its
	// packet buffers for a while, which would blur the memory figure).
	fresh, err := lab.AddNode()
	check(err)
	check(fresh.Start())
	c, err := fresh.Client(nil)
	check(err)
	defer c.Close()
	freshInfo, err := fresh.Setup(ctx, c)
	check(err)
	time.Sleep(time.Second)
	memBefore := pidMem(fresh.PID())
	var addLat, dnsLat []time.Duration
	for i := 0; i < 1000; i++ {
		var raw [32]byte
		raw[0], raw[1], raw[31] = byte(i), byte(i>>8), 0x5a
		var aips []string
		for k := 0; k < 4; k++ {
			aips = append(aips, fmt.Sprintf("10.%d.%d.0/24", 100+i/64, (i%64)*4+k))
		}
		t0 := time.Now()
		_, err := c.Call(ctx, ipc.AddPeer{PeerSpec: ipc.PeerSpec{PublicKey: base64.StdEncoding.EncodeToString(raw[:]),
			Endpoint: fmt.Sprintf("172.31.0.%d:51820", 100+i%100), AllowedIPs: strings.Join(aips, ","), PersistentKeepaliveSecs: 25}})
		check(err)
		addLat = append(addLat, time.Since(t0))
		t0 = time.Now()
		_, err = c.Call(ctx, ipc.RegisterDNS{Name: fmt.Sprintf("peer-%d.bench.local", i), IP: ipc.AddrOf(addr(1, i))})
		check(err)
		dnsLat = append(dnsLat, time.Since(t0))
	}
	time.Sleep(time.Second)
	memAfter := pidMem(fresh.PID())
	t0 := time.Now()
	st, err := c.Call(ctx, ipc.Status{})
	check(err)
	statusTook := time.Since(t0)
	routes, _ := fresh.Run(ctx, "ip", "route", "show", "proto", "79")
	wgPeers, _ := fresh.WG(ctx, "show", freshInfo.Device, "peers")
	pa, pd := summarize(addLat, 0), summarize(dnsLat, 0)
	fmt.Println("`add_peer` of 1,000 peers with 4 AllowedIPs each (an endpoint on the underlay that does not answer, keepalive 25 s), one after another, on the global device of a third node that carried no traffic; each answer waits until the peer and its 4 routes are on the device. Baseline: `register_dns` on the same daemon, interleaved (journaled, no device work).")
	fmt.Println()
	fmt.Println("| command | p50 | p99 | max |")
	fmt.Println("|---|---|---|---|")
	fmt.Printf("| add_peer (peer + 4 routes) | %s | %s | %s |\n", ms(pa.p50), ms(pa.p99), ms(maxDur(addLat)))
	fmt.Printf("| baseline: register_dns | %s | %s | %s |\n", ms(pd.p50), ms(pd.p99), ms(maxDur(dnsLat)))
	fmt.Println()
	fmt.Printf("After them: %d peers on the device (`wg show`), %d routes of protocol 79, `status` answered in %s. Daemon RSS %.1f MiB with the 1,000 peers, against %.1f MiB before them (baseline: the same node with its global device and no peer).\n\n",
		len(strings.Fields(wgPeers)), len(strings.Split(strings.TrimSpace(routes), "\n")), ms(statusTook), mib(memAfter), mib(memBefore))
	_ = st
}

func maxDur(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

func pidMem(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	check(err)
	var rss int
	for _, line := range strings.Split(string(b), "\n") {
		fmt.Sscanf(line, "VmRSS: %d kB", &rss)
	}
	return rss
}

// tcpRate runs one TCP stream from node a to target (in node b) and
// returns bits per second as the receiver counted them.
func tcpRate(ctx context.Context, bin string, a, b *netlab.Node, target string, d time.Duration) float64 {
	srv := track(b.Command(ctx, bin, "-server", target+":5201"))
	out, err := srv.StdoutPipe()
	check(err)
	check(srv.Start())
	rd := bufio.NewReader(out)
	if line, _ := rd.ReadString('\n'); strings.TrimSpace(line) != "listening" {
		fatalf("tcpbench server: %q", line)
	}
	if o, err := a.Run(ctx, bin, "-client", target+":5201", "-t", d.String()); err != nil {
		fatalf("tcpbench client to %s: %v %s", target, err, o)
	}
	line, _ := rd.ReadString('\n')
	srv.Wait()
	f := strings.Fields(line)
	if len(f) < 1 {
		fatalf("tcpbench server said %q", line)
	}
	bps, err := strconv.ParseFloat(f[0], 64)
	check(err)
	return bps
}
