//go:build linux

package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/tools/netlab"
)

// benchAttach: attach and detach latency through the daemon, the wall time
// of 100 concurrent attaches, against wiring the same containers by hand
// the slow way (create the pair in the node, then move the peer) and the
// fast way (peer created in the container).
func benchAttach(tmp string) {
	fmt.Println("## Container attach (1-node netlab)")
	fmt.Println()
	if !netlab.Root() {
		fmt.Println("Skipped: needs root (network namespaces).")
		fmt.Println()
		return
	}
	vb := filepath.Join(tmp, "vethbench")
	if out, err := exec.Command("go", "build", "-o", vb, "./tools/netlab/cmd/vethbench").CombinedOutput(); err != nil {
		fatalf("build vethbench: %v\n%s", err, out)
	}
	lab, err := netlab.New(1, netlab.Options{Daemon: daemonBin, Dir: filepath.Join(tmp, "attach")})
	check(err)
	labs["attach"] = lab
	defer func() { lab.Close(); delete(labs, "attach") }()
	nd := lab.Nodes[0]
	check(nd.Start())
	ctx := context.Background()
	c, err := nd.Client(nil)
	check(err)
	defer c.Close()
	_, err = nd.Setup(ctx, c)
	check(err)
	const n = 100
	services := make([]string, 8) // 8 services × 13 addresses of a /28
	for i := range services {
		services[i] = fmt.Sprintf("svc%d", i)
		_, err := c.Call(ctx, ipc.SetupServiceOverlay{Service: services[i], Mode: ipc.ModeShared})
		check(err)
	}
	containers := func() []*netlab.Container {
		out := make([]*netlab.Container, n)
		for i := range out {
			out[i], err = lab.NewContainer()
			check(err)
		}
		return out
	}
	attachReq := func(ctr *netlab.Container, i int, global bool) ipc.Request {
		return ipc.AttachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformLinuxPID, PID: uint32(ctr.PID)}, Service: services[i%len(services)], JoinGlobal: global}
	}

	// One after another, eth0 only and then eth0 and eth1: three rounds
	// of 100 (the services' subnets hold about 100), each attached and
	// then detached one after another; a p99 over 300 samples rather than
	// the second worst of 100.
	const rounds = 3
	sequential := func(global bool) (attach, detach []time.Duration) {
		for range rounds {
			seq := containers()
			for i, ctr := range seq {
				t0 := time.Now()
				_, err := c.Call(ctx, attachReq(ctr, i, global))
				check(err)
				attach = append(attach, time.Since(t0))
			}
			for _, ctr := range seq {
				t0 := time.Now()
				_, err := c.Call(ctx, ipc.DetachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformLinuxPID, PID: uint32(ctr.PID)}})
				check(err)
				detach = append(detach, time.Since(t0))
			}
			for _, ctr := range seq {
				ctr.Kill()
			}
		}
		return attach, detach
	}
	attachLat, detachLat := sequential(false)
	attachGLat, detachGLat := sequential(true)
	// 100 at once, one connection each.
	conc := containers()
	clients := make([]*ipc.Client, n)
	for i := range clients {
		clients[i], err = nd.Client(nil)
		check(err)
		defer clients[i].Close()
	}
	var wg sync.WaitGroup
	startGate := make(chan struct{})
	concLat := make([]time.Duration, n)
	for i := range conc {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-startGate
			t0 := time.Now()
			_, err := clients[i].Call(ctx, attachReq(conc[i], i, true))
			check(err)
			concLat[i] = time.Since(t0)
		}(i)
	}
	t0 := time.Now()
	close(startGate)
	wg.Wait()
	wall := time.Since(t0)
	// Every one of them is wired: eth0 with its address in each container.
	for _, ctr := range conc {
		out, err := ctr.Run(ctx, "ip", "-o", "-4", "addr", "show", "eth0")
		if err != nil || !strings.Contains(out, "inet ") {
			fatalf("container %d not wired after the concurrent attach: %v %s", ctr.PID, err, out)
		}
	}
	// Baselines, by hand in the node's namespace.
	hand := func(mode string) []time.Duration {
		ctrs := containers()
		var pids []string
		for _, c := range ctrs {
			pids = append(pids, strconv.Itoa(c.PID))
		}
		out, err := nd.Run(ctx, vb, "-mode", mode, "-pids", strings.Join(pids, ","))
		if err != nil {
			fatalf("vethbench: %v", err)
		}
		var lat []time.Duration
		for _, l := range strings.Fields(out) {
			f, err := strconv.ParseFloat(l, 64)
			check(err)
			lat = append(lat, time.Duration(f*float64(time.Millisecond)))
		}
		for _, c := range ctrs {
			c.Kill()
		}
		return lat
	}
	var moved, direct []time.Duration
	for range rounds {
		moved, direct = append(moved, hand("move")...), append(direct, hand("direct")...)
	}
	row := func(name string, lat []time.Duration) {
		p := summarize(lat, 0)
		fmt.Printf("| %s | %s | %s | %s |\n", name, ms(p.p50), ms(p.p99), ms(maxDur(lat)))
	}
	fmt.Println("Each container is a fresh process in its own network namespace; an answer comes once its links are up, addressed and routed. 300 per row (3 rounds of 100 containers, over 8 services), but 100 for the concurrent row. Baseline and reference are wired by hand by `tools/netlab/cmd/vethbench` in the node's namespace, with no journal, daemon or IPC.")
	fmt.Println()
	fmt.Println("| | p50 | p99 | max |")
	fmt.Println("|---|---|---|---|")
	row("attach_container (eth0), one after another", attachLat)
	row("attach_container with join_global (eth0 + eth1), one after another", attachGLat)
	row("baseline: eth0 by hand, pair made in the node then moved", moved)
	row("reference: eth0 by hand, peer made in the container", direct)
	row("detach_container (eth0), one after another", detachLat)
	row("detach_container (eth0 + eth1), one after another", detachGLat)
	row("attach_container with join_global, 100 at once (per call)", concLat)
	fmt.Println()
	fmt.Printf("100 concurrent attaches with join_global, one connection each: all answered (and wired) in %s of wall time.\n\n", ms(wall))
}
