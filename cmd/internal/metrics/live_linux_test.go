package metrics_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/zlayer/overlayd/cmd/internal/metrics"
	"github.com/zlayer/overlayd/cmd/internal/metrics/metricstest"
	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/tools/netlab"
)

// The data plane's series, from a daemon binary in a two-node netlab (as
// root): per-peer WireGuard bytes, handshake and health with the _info
// series, an attached container, an attach that fails at the veth step,
// the NAT table, DNS queries over the node's loopback. The scrape passes
// promtool check metrics too.
func TestLiveDataPlaneSeries(t *testing.T) {
	if !netlab.Root() {
		t.Skip("needs root: network namespaces, TUN devices, nftables")
	}
	bin := filepath.Join(t.TempDir(), "zlayer-overlayd")
	if out, err := exec.Command("go", "build", "-o", bin, "../../zlayer-overlayd").CombinedOutput(); err != nil {
		t.Fatalf("build the daemon: %v\n%s", err, out)
	}
	l, err := netlab.New(2, netlab.Options{Daemon: bin, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("node 0's log:\n%s", l.Nodes[0].Logs())
		}
		if err := l.Close(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	for _, nd := range l.Nodes {
		nd.Args = []string{"--metrics-listen", "127.0.0.1:9464", "--dns-listen", "127.0.0.1:53", "--dns-upstream", "127.0.0.1:1"}
	}
	ctx := context.Background()
	infos, err := l.Mesh(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	nd := l.Nodes[0]
	c, err := nd.Client(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mustCall := func(req ipc.Request) ipc.Response {
		t.Helper()
		r, err := c.Call(ctx, req)
		if err != nil {
			t.Fatalf("%s: %v", req.Op(), err)
		}
		return r
	}
	mustCall(ipc.SetupGlobalOverlay{Deployment: "lab", InstanceID: "1", ClusterCIDR: "10.200.0.0/16", WgPort: netlab.Port, NatEnabled: true})
	mustCall(ipc.SetupServiceOverlay{Service: "web", Mode: ipc.ModeShared})
	ok, err := l.NewContainer()
	if err != nil {
		t.Fatal(err)
	}
	mustCall(ipc.AttachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformLinuxPID, PID: uint32(ok.PID)}, Service: "web"})
	// A container that already has an eth0: the veth step fails.
	bad, err := l.NewContainer()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Run(ctx, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "squat0"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Call(ctx, ipc.AttachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformLinuxPID, PID: uint32(bad.PID)}, Service: "web"}); err == nil {
		t.Fatal("an attach into a container that has an eth0 was accepted")
	}
	mustCall(ipc.RegisterDNS{Name: "api.lab.local", IP: ipc.AddrOf(netipMust(t, "10.200.9.9"))})
	// DNS from the node's loopback: one answer, one NXDOMAIN.
	if err := netlab.InNetns(nd.NetnsPath(), func() error {
		for name, want := range map[string]int{"api.lab.local.": mdns.RcodeSuccess, "nope.lab.local.": mdns.RcodeNameError} {
			m := new(mdns.Msg)
			m.SetQuestion(name, mdns.TypeA)
			r, err := mdns.Exchange(m, "127.0.0.1:53")
			if err != nil || r.Rcode != want {
				return fmt.Errorf("%s: %v %v", name, r, err)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	scrape := func() (string, metricstest.Families) {
		t.Helper()
		var conn net.Conn
		if err := netlab.InNetns(nd.NetnsPath(), func() (err error) {
			conn, err = net.Dial("tcp", "127.0.0.1:9464")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		code, body := metricstest.GetOn(t, conn, "/metrics")
		if code != 200 {
			t.Fatalf("/metrics: %d\n%s", code, body)
		}
		return body, metricstest.Parse(t, body)
	}
	peer := metrics.PeerID(infos[1].PublicKey)
	dev := infos[0].Device
	var body string
	var f metricstest.Families
	deadline := time.Now().Add(30 * time.Second)
	for {
		body, f = scrape()
		hs, _ := f.Lookup("overlayd_wireguard_peer_last_handshake_timestamp_seconds", "device", dev, "peer", peer)
		rx, _ := f.Lookup("overlayd_wireguard_peer_receive_bytes_total", "device", dev, "peer", peer)
		if hs > 0 && rx > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no handshake with node 1 in the metrics after 30 s:\n%s", body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if hs := f.Value(t, "overlayd_wireguard_peer_last_handshake_timestamp_seconds", "device", dev, "peer", peer); time.Since(time.Unix(int64(hs), 0)) > time.Minute {
		t.Errorf("last handshake %v ago", time.Since(time.Unix(int64(hs), 0)))
	}
	if v := f.Value(t, "overlayd_wireguard_peer_transmit_bytes_total", "device", dev, "peer", peer); v <= 0 {
		t.Errorf("tx bytes %v", v)
	}
	if v := f.Value(t, "overlayd_wireguard_peer_healthy", "device", dev, "peer", peer); v != 1 {
		t.Errorf("healthy %v", v)
	}
	if v := f.Value(t, "overlayd_wireguard_peer_info", "device", dev, "peer", peer, "public_key", infos[1].PublicKey); v != 1 {
		t.Errorf("info %v", v)
	}
	if info := f.Series("overlayd_wireguard_peer_info"); !strings.Contains(info, "endpoint="+l.Nodes[1].Underlay.String()) {
		t.Errorf("the info series does not hold node 1's endpoint: %s", info)
	}
	if v := f.Value(t, "overlayd_wireguard_peers", "device", dev); v != 1 {
		t.Errorf("peers of %s: %v", dev, v)
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"overlayd_attachments", nil, 1},
		{"overlayd_attach_failures_total", []string{"step", "veth"}, 1},
		{"overlayd_nat_table_present", nil, 1},
		{"overlayd_dns_queries_total", []string{"qtype", "A", "proto", "udp", "rcode", "NOERROR"}, 1},
		{"overlayd_dns_queries_total", []string{"qtype", "A", "proto", "udp", "rcode", "NXDOMAIN"}, 1},
		{"overlayd_dns_records", nil, 1},
		{"overlayd_ready", nil, 1},
	} {
		if got := f.Value(t, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	for _, rec := range []string{"wireguard", "bridge", "dns", "nat"} {
		if v := f.Value(t, "overlayd_reconcile_passes_total", "reconciler", rec, "result", "ok"); v < 1 {
			t.Errorf("%s passes %v", rec, v)
		}
	}
	// Drift: the NAT table flushed by hand is rebuilt by SIGHUP's check
	// and counted.
	if _, err := nd.Run(ctx, "nft", "delete", "table", "inet", "zlayer_overlayd"); err != nil {
		t.Fatal(err)
	}
	mustCall(ipc.NatTick{})
	deadline = time.Now().Add(20 * time.Second)
	for {
		body, f = scrape()
		if v, _ := f.Lookup("overlayd_reconcile_drift_repaired_total", "kind", "nat_table"); v >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the NAT table's repair is not counted:\n%s", body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	metricstest.Promtool(t, body)
}

func netipMust(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
