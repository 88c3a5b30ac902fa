//go:build pins

// Package tools pins the modules the effect handlers are built on
// (golang.zx2c4.com/wireguard, wgctrl, netlink, netns, nftables, miekg/dns)
// so that go.mod records the versions the lab measured until the
// effect packages import them. The build tag keeps this file out of every
// build; `go mod tidy` still sees it.
package tools

import (
	_ "github.com/google/nftables"
	_ "github.com/miekg/dns"
	_ "github.com/vishvananda/netlink"
	_ "github.com/vishvananda/netns"
	_ "golang.zx2c4.com/wireguard/device"
)
