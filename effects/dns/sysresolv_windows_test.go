package dns

import (
	"net/netip"
	"testing"
)

// The adapters' DNS servers come back as usable ip:53 upstreams, never a
// loopback or link-local one.
func TestSystemResolvers(t *testing.T) {
	ups := systemResolvers()
	t.Logf("system resolvers: %v", ups)
	for _, u := range ups {
		ap, err := netip.ParseAddrPort(u)
		if err != nil || ap.Port() != Port || ap.Addr().IsLoopback() || ap.Addr().IsLinkLocalUnicast() {
			t.Errorf("upstream %q is not a usable ip:53", u)
		}
	}
}
