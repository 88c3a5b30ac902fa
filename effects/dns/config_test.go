package dns

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/zlayer/overlayd/projections"
)

func TestDesired(t *testing.T) {
	st := projections.New()
	st.Seq = 77
	if c := Desired(st); len(c.Zones)+len(c.Listen)+len(c.Clients) != 0 {
		t.Fatalf("empty state: %+v", c)
	}
	st.Global = &projections.Global{Deployment: "Prod", ClusterCIDR: netip.MustParsePrefix("10.200.0.0/16"),
		Slice: netip.MustParsePrefix("10.200.7.0/24"), NodeIP: netip.MustParseAddr("10.200.7.1")}
	st.Services["web"] = &projections.Service{Name: "web", Subnet: netip.MustParsePrefix("10.200.16.0/28"), Gateway: netip.MustParseAddr("10.200.16.1")}
	for i, d := range []string{"overlay", "Cluster.Internal.", "", "overlay"} {
		st.Attachments[fmt.Sprint(i)] = &projections.Attachment{DNSDomain: d}
	}
	c := Desired(st)
	for _, check := range []struct {
		what      string
		got, want any
	}{
		{"zones (primary first: the least attachment domain; then the rest in order)", fmt.Sprint(c.Zones), "[cluster.internal. overlay. prod.local.]"},
		{"listen", fmt.Sprint(c.Listen), "[10.200.7.1:53 10.200.16.1:53]"},
		{"clients", fmt.Sprint(c.Clients), "[10.200.7.0/24 10.200.7.1/32 10.200.16.0/28]"},
		{"reverse", fmt.Sprint(c.Reverse), "[10.200.0.0/16 10.200.7.0/24 10.200.16.0/28]"},
		{"serial", c.Serial, uint32(77)},
	} {
		if fmt.Sprint(check.got) != fmt.Sprint(check.want) {
			t.Errorf("%s: %v, want %v", check.what, check.got, check.want)
		}
	}
	// Without attachment domains the deployment's zone is primary.
	st.Attachments = map[string]*projections.Attachment{}
	if c := Desired(st); fmt.Sprint(c.Zones) != "[prod.local.]" {
		t.Errorf("zones: %v", c.Zones)
	}
}
