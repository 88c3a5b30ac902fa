package wireguard

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/zlayer/overlayd/projections"
)

const (
	kA = "hM3ZhMk4eX1oP0nH1F7d2mY7qf3y2V9lE8Yt8s6QK0Y="
	kB = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
)

func pfx(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, x := range s {
		out = append(out, netip.MustParsePrefix(x))
	}
	return out
}

func TestPeerDiffUpdatesInPlace(t *testing.T) {
	hA, err := hexKey(kA)
	if err != nil {
		t.Fatal(err)
	}
	hB, err := hexKey(kB)
	if err != nil {
		t.Fatal(err)
	}
	ep := netip.MustParseAddrPort("192.0.2.1:51820")
	// New peers: full specification.
	text, added, err := peerDiff(map[string]*applied{}, []Peer{{PublicKey: kA, Endpoint: ep, AllowedIPs: pfx("10.1.0.0/24", "10.2.0.1/32"), Keepalive: 25}})
	if err != nil || len(added) != 1 {
		t.Fatal(err, added)
	}
	want := "public_key=" + hA + "\nendpoint=192.0.2.1:51820\npersistent_keepalive_interval=25\nallowed_ip=10.1.0.0/24\nallowed_ip=10.2.0.1/32\n"
	if text != want {
		t.Fatalf("got\n%s\nwant\n%s", text, want)
	}
	have := appliedOf([]Peer{{PublicKey: kA, Endpoint: ep, AllowedIPs: pfx("10.1.0.0/24", "10.2.0.1/32"), Keepalive: 25}}, nil)
	// Same config: nothing to do.
	if text, _, err := peerDiff(have, []Peer{{PublicKey: kA, Endpoint: ep, AllowedIPs: pfx("10.1.0.0/24", "10.2.0.1/32"), Keepalive: 25}}); err != nil || text != "" {
		t.Fatalf("no-op diff produced %q, %v", text, err)
	}
	// One AllowedIP added, one removed, peer B removed: in place, never
	// replace_allowed_ips, never remove A.
	have[kB] = &applied{AllowedIPs: map[netip.Prefix]bool{}}
	text, added, err = peerDiff(have, []Peer{{PublicKey: kA, Endpoint: ep, AllowedIPs: pfx("10.1.0.0/24", "10.3.0.0/28"), Keepalive: 25}})
	if err != nil {
		t.Fatal(err)
	}
	want = "public_key=" + hA + "\nupdate_only=true\nallowed_ip=10.3.0.0/28\nallowed_ip=-10.2.0.1/32\npublic_key=" + hB + "\nremove=true\n"
	if text != want || len(added) != 0 {
		t.Fatalf("got\n%s\nwant\n%s", text, want)
	}
	if strings.Contains(text, "replace_allowed_ips") {
		t.Fatal("replace_allowed_ips drops every prefix for a moment")
	}
}

func TestParseGet(t *testing.T) {
	hA, err := hexKey(kA)
	if err != nil {
		t.Fatal(err)
	}
	text := "private_key=abcd\nlisten_port=51820\npublic_key=" + hA + "\nendpoint=192.0.2.1:51820\nlast_handshake_time_sec=1764100000\nlast_handshake_time_nsec=5\ntx_bytes=10\nrx_bytes=20\npersistent_keepalive_interval=25\nallowed_ip=10.1.0.0/24\nprotocol_version=1\nerrno=0\n\n"
	ds, err := parseGet(text)
	if err != nil || ds.ListenPort != 51820 || len(ds.Peers) != 1 {
		t.Fatal(err, ds)
	}
	p := ds.Peers[0]
	if p.PublicKey != kA || p.Endpoint != "192.0.2.1:51820" || !p.LastHandshake.Equal(time.Unix(1764100000, 5)) || p.RxBytes != 20 || p.Keepalive != 25 || len(p.AllowedIPs) != 1 {
		t.Fatalf("%+v", p)
	}
}

func TestDesiredAndRoutes(t *testing.T) {
	st := projections.New()
	cfg := projections.DefaultConfig()
	for _, c := range []projections.Command{
		projections.SetNodeIdentity{PublicKey: kB},
		projections.SetupGlobal{Deployment: "p", InstanceID: "1", ClusterCIDR: "10.200.0.0/16", SliceCIDR: "10.200.7.0/24", Port: 51820},
		projections.AddPeer{PublicKey: kA, Endpoint: "192.0.2.1:51820", AllowedIPs: "10.200.0.0/16,10.200.8.1/32,10.9.0.0/24", Keepalive: 25},
	} {
		d, err := projections.Decide(st, cfg, c)
		if err != nil {
			// 10.200.0.0/16 overlaps the slice: use the rest.
			c = projections.AddPeer{PublicKey: kA, Endpoint: "192.0.2.1:51820", AllowedIPs: "10.200.8.1/32,10.9.0.0/24", Keepalive: 25}
			if d, err = projections.Decide(st, cfg, c); err != nil {
				t.Fatal(err)
			}
		}
		for _, ev := range d.Events {
			if err := st.Apply(ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	cfgs := Desired(st)
	if len(cfgs) != 1 || cfgs[0].Name != "zl-p-1-g" || cfgs[0].Address.String() != "10.200.7.1/16" || cfgs[0].Port != 51820 {
		t.Fatalf("%+v", cfgs)
	}
	if r := cfgs[0].Routes(); len(r) != 2 || r[0].String() != "10.9.0.0/24" || r[1].String() != "10.200.8.1/32" {
		t.Fatalf("routes %v", r)
	}
}
