package projections

import (
	"encoding/binary"
	"math/bits"
	"strconv"
	"strings"
)

// Interface-name derivation, bit-compatible with the daemon this one replaces
// (see PROTOCOL.md, "Name derivation"): "zl-" + parts joined by "-" + "-" +
// suffix when that fits in IFNAMSIZ-1 (15) bytes, else a SipHash-1-3 (keys
// 0,0) of the parts, each followed by 0xFF, then the suffix followed by 0xFF.

const maxIfName = 15

// Suffixes of the derived names.
const (
	SuffixGlobal    = "g" // the global WireGuard device
	SuffixBridge    = "b" // a service bridge
	SuffixDedicated = "d" // a dedicated service WireGuard device
)

// InterfaceName derives a kernel interface name from parts and a suffix.
func InterfaceName(parts []string, suffix string) string {
	cand := "zl-" + strings.Join(parts, "-")
	if suffix != "" {
		cand += "-" + suffix
	}
	if len(cand) <= maxIfName {
		return cand
	}
	var buf []byte
	for _, p := range parts {
		buf = append(buf, p...)
		buf = append(buf, 0xFF)
	}
	buf = append(buf, suffix...)
	buf = append(buf, 0xFF)
	hex := strconv.FormatUint(sipHash13(0, 0, buf), 16)
	if suffix == "" {
		return "zl-" + clip(hex, 12)
	}
	budget := maxIfName - (3 + 1 + len(suffix))
	if budget <= 0 {
		return "zl-" + clip(hex, 12)
	}
	return "zl-" + clip(hex, budget) + "-" + suffix
}

func clip(s string, n int) string {
	if len(s) < n {
		return s
	}
	return s[:n]
}

// sipHash13 is SipHash with 1 compression and 3 finalisation rounds, as
// Rust's std DefaultHasher computes it.
func sipHash13(k0, k1 uint64, msg []byte) uint64 {
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	round := func() {
		v0 += v1
		v1 = bits.RotateLeft64(v1, 13)
		v1 ^= v0
		v0 = bits.RotateLeft64(v0, 32)
		v2 += v3
		v3 = bits.RotateLeft64(v3, 16)
		v3 ^= v2
		v0 += v3
		v3 = bits.RotateLeft64(v3, 21)
		v3 ^= v0
		v2 += v1
		v1 = bits.RotateLeft64(v1, 17)
		v1 ^= v2
		v2 = bits.RotateLeft64(v2, 32)
	}
	n := len(msg)
	for len(msg) >= 8 {
		m := binary.LittleEndian.Uint64(msg)
		v3 ^= m
		round()
		v0 ^= m
		msg = msg[8:]
	}
	var last [8]byte
	copy(last[:], msg)
	last[7] = byte(n)
	m := binary.LittleEndian.Uint64(last[:])
	v3 ^= m
	round()
	v0 ^= m
	v2 ^= 0xff
	round()
	round()
	round()
	return v0 ^ v1 ^ v2 ^ v3
}
