package netconv

import (
	"net/netip"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, s := range []string{"10.200.0.0/16", "10.1.2.3/32", "0.0.0.0/0", "fd00::/64", "::/0", "2001:db8::1/128"} {
		p := netip.MustParsePrefix(s)
		got, ok := Prefix(IPNet(p))
		if !ok || got != p {
			t.Errorf("%s: round trip gave %v %v", s, got, ok)
		}
	}
	if got := HostNet(netip.MustParseAddr("10.9.0.7")).String(); got != "10.9.0.7/32" {
		t.Errorf("HostNet = %s", got)
	}
	if _, ok := Prefix(nil); ok {
		t.Error("Prefix(nil) ok")
	}
}
