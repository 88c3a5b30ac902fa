package daemon

import (
	"net/netip"
	"testing"

	"github.com/zlayer/overlayd/projections"
)

// What the advertised address must avoid comes from the state: the
// cluster, the slice and every service subnet; the global device, each
// bridge and each dedicated device; and any link with the daemon's mark.
func TestOwnedOfState(t *testing.T) {
	st := projections.New()
	st.Global = &projections.Global{ClusterCIDR: netip.MustParsePrefix("10.200.0.0/16"), Slice: netip.MustParsePrefix("10.200.7.0/24"), Device: "zl-prod-1-g"}
	st.Services["web"] = &projections.Service{Name: "web", Subnet: netip.MustParsePrefix("10.201.0.0/28"), Bridge: "zl-web-b"}
	st.Services["db"] = &projections.Service{Name: "db", Subnet: netip.MustParsePrefix("fd00:1::/120"), Bridge: "zl-db-b", Dedicated: &projections.Dedicated{Device: "zl-db-w"}}
	o := ownedOf(st)
	for _, name := range []string{"zl-prod-1-g", "zl-web-b", "zl-db-b", "zl-db-w"} {
		if !o.ownsLink(name, "") {
			t.Errorf("link %s not the daemon's", name)
		}
	}
	if o.ownsLink("eth0", "") || !o.ownsLink("veth1", "zlayer-overlayd attach linux_pid:1 a") {
		t.Error("links judged wrongly by name or mark")
	}
	for a, want := range map[string]bool{
		"10.200.9.9": false, "10.201.0.5": false, "fd00:1::5": false, "127.0.0.1": false, "fe80::1": false,
		"192.0.2.10": true, "10.202.0.1": true, "2001:db8::1": true, "::ffff:192.0.2.10": true,
	} {
		if got := o.usable(netip.MustParseAddr(a)); got != want {
			t.Errorf("usable(%s) = %v, want %v", a, got, want)
		}
	}
}
