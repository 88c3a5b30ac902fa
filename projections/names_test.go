package projections

import (
	"net/netip"
	"testing"
)

// Vectors from PROTOCOL.md ("Name derivation") and reference/.
func TestInterfaceNameVectors(t *testing.T) {
	for _, tc := range []struct {
		parts  []string
		suffix string
		want   string
	}{
		{[]string{"zlayer", "12345"}, "g", "zl-9eae6e0a9b-g"},
		{[]string{"prod", "42"}, "g", "zl-prod-42-g"},
		{[]string{"prod", "42", "web"}, "b", "zl-2b113f2ca5-b"},
		{[]string{"prod", "42", "web"}, "d", "zl-c6773e13ce-d"},
		{[]string{"myapp", "node1"}, "g", "zl-f22c1b9cc2-g"},
		{[]string{"prod", "42", "db"}, "d", "zl-prod-42-db-d"},
		{[]string{"a-really-long-name-exceeding-everything"}, "suffix", "zl-26de0-suffix"},
		{[]string{"a-really-long-name"}, "verylongsuffix12", "zl-80dba09df378"},
		{[]string{"zlayer-manager"}, "g", "zl-4b72278e21-g"},
		{[]string{"my-very-long-deployment-name-that-goes-on-and-on"}, "g", "zl-69b24c01df-g"},
		{[]string{"x"}, "", "zl-x"},
	} {
		if got := InterfaceName(tc.parts, tc.suffix); got != tc.want {
			t.Errorf("InterfaceName(%q, %q) = %q, want %q", tc.parts, tc.suffix, got, tc.want)
		}
	}
}

func TestHashVectors(t *testing.T) {
	if h := ServiceSubnetHash("web", "1"); h != 0x66acce2e098fe4a1 {
		t.Fatalf("FNV-1a(web\\x1f1) = %#x, want 0x66acce2e098fe4a1", h)
	}
	v4 := netip.MustParsePrefix("10.200.0.0/16")
	v6 := netip.MustParsePrefix("fd00:200::/48")
	for _, tc := range []struct {
		hash    uint64
		cluster netip.Prefix
		bits    int
		want    string
	}{
		{ServiceSubnetHash("web", "1"), v4, 28, "10.200.74.16/28"},
		{ServiceSubnetHash("web", "2"), v4, 28, "10.200.248.128/28"},
		{ServiceSubnetHash("svc-a", "node-1"), v4, 28, "10.200.103.32/28"},
		{ServiceSubnetHash("svc-x", "node-x"), v4, 28, "10.200.133.128/28"},
		{ServiceSubnetHash("web", "1"), v6, 120, "fd00:200:0:66:acce:2e09:8fe4:a100/120"},
		{SliceHash("leader"), v4, 28, "10.200.174.64/28"},
		{SliceHash("node-a"), v4, 28, "10.200.181.48/28"},
		{SliceHash("1"), v4, 28, "10.200.175.192/28"},
		{SliceHash("2"), v4, 28, "10.200.1.80/28"},
		{SliceHash("3"), v4, 28, "10.200.230.32/28"},
		{SliceHash("leader"), v6, 64, "fd00:200:0:eae4::/64"},
	} {
		got, ok := probeSlot(tc.cluster, tc.bits, tc.hash, func(netip.Prefix) bool { return true })
		if !ok || got.String() != tc.want {
			t.Errorf("slot(%#x in %s /%d) = %s, want %s", tc.hash, tc.cluster, tc.bits, got, tc.want)
		}
	}
}

func TestProbeSkipsAndWraps(t *testing.T) {
	c := netip.MustParsePrefix("10.0.0.0/24")
	// Four /26 slots; start at slot 3, which is taken: wraps to slot 0.
	got, ok := probeSlot(c, 26, 3, func(p netip.Prefix) bool { return p.Addr() != netip.MustParseAddr("10.0.0.192") })
	if !ok || got.String() != "10.0.0.0/26" {
		t.Fatalf("got %s %v", got, ok)
	}
	if _, ok := probeSlot(c, 26, 1, func(netip.Prefix) bool { return false }); ok {
		t.Fatal("a full cluster must not yield a slot")
	}
}

func TestAddressArithmetic(t *testing.T) {
	for _, tc := range []struct{ p, last string }{
		{"10.200.74.16/28", "10.200.74.31"},
		{"10.0.0.0/8", "10.255.255.255"},
		{"fd00::/120", "fd00::ff"},
		{"fd00::/64", "fd00::ffff:ffff:ffff:ffff"},
		{"fd00::/48", "fd00:0:0:ffff:ffff:ffff:ffff:ffff"},
	} {
		if got := lastAddr(netip.MustParsePrefix(tc.p)); got != netip.MustParseAddr(tc.last) {
			t.Errorf("lastAddr(%s) = %s, want %s", tc.p, got, tc.last)
		}
	}
	if c := capacity(netip.MustParsePrefix("10.0.0.0/28")); c != 14 {
		t.Errorf("capacity /28 = %d", c)
	}
}
