//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"

	"path/filepath"
	"strings"
	"time"

	"github.com/zlayer/overlayd/effects"
	"github.com/zlayer/overlayd/effects/nat"
	"github.com/zlayer/overlayd/tools/netlab"
)

// benchNAT: time to rebuild the daemon's nftables table for 1,000 service
// subnets (one netlink batch through google/nftables), and the periodic
// drift check of that table, against loading the same table with
// `nft -f` (what a daemon shelling out to the nft tool does), in a
// namespace of its own.
func benchNAT(tmp string) {
	fmt.Println("## NAT table rebuild (1,000 service subnets)")
	fmt.Println()
	if !netlab.Root() {
		fmt.Println("Skipped: needs root (network namespaces).")
		fmt.Println()
		return
	}
	lab, err := netlab.New(1, netlab.Options{Daemon: daemonBin, Dir: filepath.Join(tmp, "nat")})
	check(err)
	labs["nat"] = lab
	defer func() { lab.Close(); delete(labs, "nat") }()
	nd := lab.Nodes[0]
	f, err := os.Open(nd.NetnsPath())
	check(err)
	defer f.Close()
	r := nat.NewInNetns(slog.New(slog.NewTextHandler(io.Discard, nil)), effects.Owner{Journal: "bench"}, int(f.Fd()))
	defer r.Close()

	const runs = 50
	cfgs := []nat.Config{natConfig(1000), natConfig(999)}
	var rebuild, verify, nftf []time.Duration
	for i := 0; i < runs; i++ {
		t0 := time.Now()
		check(r.Apply(cfgs[i%2], false))
		rebuild = append(rebuild, time.Since(t0))
	}
	for i := 0; i < runs; i++ {
		t0 := time.Now()
		check(r.Apply(cfgs[(runs-1)%2], true)) // same config: compare only
		verify = append(verify, time.Since(t0))
	}
	if s := r.Stats(); s.Repairs != 0 {
		fatalf("nat: the drift check found drift in a table nobody touched: %+v", s)
	}
	check(r.Apply(nat.Config{}, false))
	files := []string{filepath.Join(tmp, "nat-1000.nft"), filepath.Join(tmp, "nat-999.nft")}
	for i, c := range cfgs {
		check(os.WriteFile(files[i], []byte(nftText(c)), 0o600))
	}
	for i := 0; i < runs; i++ {
		t0 := time.Now()
		if out, err := nd.Run(context.Background(), "nft", "-f", files[i%2]); err != nil {
			fatalf("nft -f: %v\n%s", err, out)
		}
		nftf = append(nftf, time.Since(t0))
	}
	fmt.Printf("Each rebuild replaces the whole table (2 chains, 5 rules, sets with 1,000 bridges and 1,000 /28 subnets) atomically; %d runs each, alternating 1,000 and 999 subnets.\n\n", runs)
	fmt.Println("| operation | median | p90 | max |")
	fmt.Println("|---|---|---|---|")
	row := func(name string, d []time.Duration) {
		fmt.Printf("| %s | %v | %v | %v |\n", name, pct(d, 50).Round(10*time.Microsecond), pct(d, 90).Round(10*time.Microsecond), pct(d, 100).Round(10*time.Microsecond))
	}
	row("overlayd: rebuild in one netlink batch", rebuild)
	row("overlayd: drift check (list and compare)", verify)
	row("baseline: `nft -f` of the same table", nftf)
	fmt.Println()
}

func natConfig(n int) nat.Config {
	c := nat.Config{Enabled: true,
		Sources: []netip.Prefix{netip.MustParsePrefix("10.200.7.0/24")},
		Overlay: []netip.Prefix{netip.MustParsePrefix("10.200.0.0/16"), netip.MustParsePrefix("10.200.7.0/24")},
		Devices: []string{"zl-bench-1-g"}}
	for i := 0; i < n; i++ {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(210 + i/4096), byte(i / 16 % 256), byte(i % 16 * 16)}), 28)
		c.Sources = append(c.Sources, p)
		c.Overlay = append(c.Overlay, p)
		c.Bridges = append(c.Bridges, fmt.Sprintf("zl-s%d-b", i))
	}
	return c
}

// nftText is the table of c as an nft script that replaces it atomically.
func nftText(c nat.Config) string {
	var b strings.Builder
	q := func(names []string) string {
		var out []string
		for _, n := range names {
			out = append(out, `"`+n+`"`)
		}
		return strings.Join(out, ", ")
	}
	ranges := func(rs []nat.Range) string {
		var out []string
		for _, r := range rs {
			out = append(out, r.From.String()+"-"+r.To.String())
		}
		return strings.Join(out, ", ")
	}
	fmt.Fprintf(&b, "table inet %s\ndelete table inet %s\ntable inet %s {\n", nat.Table, nat.Table, nat.Table)
	fmt.Fprintf(&b, "set overlay_ifs { type ifname; elements = { %s } }\n", q(append(append([]string{}, c.Bridges...), c.Devices...)))
	fmt.Fprintf(&b, "set bridges { type ifname; elements = { %s } }\n", q(c.Bridges))
	fmt.Fprintf(&b, "set wg_devices { type ifname; elements = { %s } }\n", q(c.Devices))
	fmt.Fprintf(&b, "set src4 { type ipv4_addr; flags interval; elements = { %s } }\n", ranges(nat.Merge(c.Sources, true)))
	fmt.Fprintf(&b, "set dst4 { type ipv4_addr; flags interval; elements = { %s } }\n", ranges(nat.Merge(c.Overlay, true)))
	b.WriteString(`chain postrouting { type nat hook postrouting priority srcnat; policy accept;
ip saddr @src4 ip daddr != @dst4 oifname != @overlay_ifs counter masquerade comment "zlayer-overlayd: masquerade ipv4 leaving the overlay"
}
chain forward { type filter hook forward priority filter; policy accept;
iifname @bridges oifname @wg_devices counter accept comment "zlayer-overlayd: service bridges to the mesh"
iifname @wg_devices oifname @bridges counter accept comment "zlayer-overlayd: the mesh to service bridges"
iifname @bridges oifname != @overlay_ifs counter accept comment "zlayer-overlayd: service bridges to the world (masqueraded)"
oifname @bridges ct state established,related counter accept comment "zlayer-overlayd: replies from the world to service bridges"
}
}
`)
	return b.String()
}
