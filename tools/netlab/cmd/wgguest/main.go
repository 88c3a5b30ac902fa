//go:build linux

// Command wgguest is a guest: it brings up a plain wireguard-go device from
// a guest_config answer (the JSON of the response object, in a file) and
// keeps it up until killed. The netlab tests run it in a namespace of its
// own to show that the answer alone is enough to join the overlay; the
// benchmarks use it, with hand-written configurations, as the bare
// wireguard-go baseline.
//
//	wgguest -config guest.json -name wgguest0
package main

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
)

type guestConfig struct {
	OverlayIP  string `json:"overlay_ip"`
	PrefixLen  int    `json:"prefix_len"`
	PrivateKey string `json:"private_key"`
	Peers      []struct {
		PublicKey  string `json:"public_key"`
		Endpoint   string `json:"endpoint"`
		AllowedIPs string `json:"allowed_ips"`
		Keepalive  uint64 `json:"persistent_keepalive_secs"`
	} `json:"peers"`
}

func hexKey(b64 string) string {
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(b) != 32 {
		fail("bad key %q", b64)
	}
	return hex.EncodeToString(b)
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "wgguest: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	path := flag.String("config", "", "guest_config JSON")
	name := flag.String("name", "wgguest0", "interface name")
	port := flag.Int("listen-port", 0, "UDP port (0: any)")
	flag.Parse()
	b, err := os.ReadFile(*path)
	if err != nil {
		fail("%v", err)
	}
	var gc guestConfig
	if err := json.Unmarshal(b, &gc); err != nil {
		fail("%v", err)
	}
	t, err := tun.CreateTUN(*name, 1420)
	if err != nil {
		fail("tun: %v", err)
	}
	dev := device.NewDevice(t, conn.NewDefaultBind(), device.NewLogger(device.LogLevelError, "wgguest: "))
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "private_key=%s\nlisten_port=%d\n", hexKey(gc.PrivateKey), *port)
	for _, p := range gc.Peers {
		fmt.Fprintf(&cfg, "public_key=%s\n", hexKey(p.PublicKey))
		if p.Endpoint != "" {
			fmt.Fprintf(&cfg, "endpoint=%s\n", p.Endpoint)
		}
		fmt.Fprintf(&cfg, "persistent_keepalive_interval=%d\n", p.Keepalive)
		for _, a := range strings.Split(p.AllowedIPs, ",") {
			if a = strings.TrimSpace(a); a != "" {
				fmt.Fprintf(&cfg, "allowed_ip=%s\n", a)
			}
		}
	}
	if err := dev.IpcSet(cfg.String()); err != nil {
		fail("configure: %v", err)
	}
	l, err := netlink.LinkByName(*name)
	if err != nil {
		fail("%v", err)
	}
	ip := netip.MustParseAddr(gc.OverlayIP)
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(gc.PrefixLen, ip.BitLen())}}
	if err := netlink.AddrAdd(l, addr); err != nil {
		fail("address: %v", err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		fail("up: %v", err)
	}
	fmt.Println("up")
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	<-sigs
	dev.Close()
}
