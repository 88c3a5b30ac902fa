package dns

import (
	"bufio"
	"bytes"
	"net/netip"
	"strings"
)

// ParseResolvConf returns the upstream resolvers ("ip:53") that a
// resolv.conf names, skipping loopback stubs (systemd-resolved's
// 127.0.0.53, a local dnsmasq): forwarding to them from the overlay would
// loop back through the host, or to ourselves.
func ParseResolvConf(b []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		// A zone index (fe80::1%eth0) is allowed.
		a, err := netip.ParseAddr(f[1])
		if err != nil || a.Unmap().IsLoopback() || a.IsUnspecified() {
			continue
		}
		out = append(out, netip.AddrPortFrom(a.Unmap(), Port).String())
	}
	return out
}
