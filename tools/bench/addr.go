//go:build linux

package main

import "net/netip"

func addr(w, i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(w), byte(i >> 8), byte(i)})
}
