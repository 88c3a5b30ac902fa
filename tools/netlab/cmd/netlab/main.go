//go:build linux

// Command netlab runs overlayd nodes in network namespaces on this machine.
//
//	go run ./tools/netlab/cmd/netlab demo        # 3 nodes, full mesh, ping each other, clean up
//	go run ./tools/netlab/cmd/netlab up -n 3     # the same mesh, kept until Ctrl-C
//
// Needs root. Everything it creates (namespaces, links, daemons, data
// dirs) is removed on exit, on Ctrl-C and on failure.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/zlayer/overlayd/tools/netlab"
)

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "demo" && os.Args[1] != "up") {
		fmt.Fprintln(os.Stderr, "usage: netlab demo | netlab up [-n N]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	n := fs.Int("n", 3, "number of nodes")
	daemon := fs.String("daemon", "", "zlayer-overlayd binary (default: build it)")
	fs.Parse(os.Args[2:])
	if err := run(os.Args[1], *n, *daemon); err != nil {
		fmt.Fprintln(os.Stderr, "netlab:", err)
		os.Exit(1)
	}
}

func run(mode string, n int, daemon string) error {
	if !netlab.Root() {
		return fmt.Errorf("needs root (network namespaces)")
	}
	tmp, err := os.MkdirTemp("", "netlab-bin-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if daemon == "" {
		daemon = filepath.Join(tmp, "zlayer-overlayd")
		fmt.Println("building zlayer-overlayd ...")
		if out, err := exec.Command("go", "build", "-o", daemon, "./cmd/zlayer-overlayd").CombinedOutput(); err != nil {
			return fmt.Errorf("build (run from the repository root): %v\n%s", err, out)
		}
	}
	lab, err := netlab.New(n, netlab.Options{Daemon: daemon})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("cleaning up: stopping daemons, deleting namespaces", lab.Name+"-*")
		if err := lab.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "netlab: cleanup:", err)
		}
	}()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-sigs
		fmt.Println("\ninterrupted")
		cancel()
	}()

	fmt.Printf("lab %s: %d nodes on underlay 172.31.0.0/24\n", lab.Name, n)
	infos, err := lab.Mesh(ctx, 25)
	if err != nil {
		return err
	}
	for i, in := range infos {
		fmt.Printf("  node %d  ns %-14s underlay %-12s overlay %-13s slice %-16s device %s key %s\n",
			i, lab.Nodes[i].NS, lab.Nodes[i].Underlay, in.NodeIP, in.Slice, in.Device, in.PublicKey)
	}
	fmt.Println("pinging every node's overlay address from every other node:")
	failed := 0
	for i, a := range lab.Nodes {
		for j := range lab.Nodes {
			if i == j {
				continue
			}
			out, err := a.Run(ctx, "ping", "-c", "3", "-i", "0.2", "-W", "2", infos[j].NodeIP)
			summary := lastLines(out, 2)
			if err != nil {
				failed++
				fmt.Printf("  node %d -> node %d (%s): FAILED\n%s\n", i, j, infos[j].NodeIP, summary)
				continue
			}
			fmt.Printf("  node %d -> node %d (%s): %s\n", i, j, infos[j].NodeIP, rtt(summary))
		}
	}
	wgOut, err := lab.Nodes[0].WG(ctx, "show", infos[0].Device)
	if err == nil {
		fmt.Printf("wg show %s on node 0:\n%s", infos[0].Device, indent(wgOut))
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d pings failed", failed, n*(n-1))
	}
	if mode == "up" {
		fmt.Println("mesh is up; sockets:")
		for _, nd := range lab.Nodes {
			fmt.Printf("  node %d: %s (ip netns exec %s ...)\n", nd.Index, nd.Socket, nd.NS)
		}
		fmt.Println("Ctrl-C to tear it down")
		<-ctx.Done()
		return nil
	}
	time.Sleep(10 * time.Millisecond)
	fmt.Println("all nodes reach each other over the overlay")
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func rtt(summary string) string {
	for _, l := range strings.Split(summary, "\n") {
		if strings.HasPrefix(l, "rtt") {
			return "ok, " + l
		}
	}
	return "ok"
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("    " + l + "\n")
	}
	return b.String()
}
