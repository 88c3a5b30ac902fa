package daemon

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/zlayer/overlayd/cmd/internal/metrics"
	"github.com/zlayer/overlayd/cmd/internal/metrics/metricstest"
	"github.com/zlayer/overlayd/effects"
	"github.com/zlayer/overlayd/effects/dns"
	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/journal"
	"github.com/zlayer/overlayd/projections"
)

// freePort returns a loopback address:port nothing listens on now.
func freePort(t *testing.T, network string) string {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().String()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitMetricsAddr waits until d's metrics server has bound.
func waitMetricsAddr(t *testing.T, d *Daemon) string {
	t.Helper()
	var addr string
	waitUntil(t, "the metrics server to bind", func() bool { addr = d.MetricsAddr(); return addr != "" })
	return addr
}

// A scrape of a daemon after a small scenario holds every family of
// docs/metrics.md with plausible values, parses with Prometheus's text
// parser and passes promtool check metrics.
func TestMetricsScrape(t *testing.T) {
	dir := t.TempDir()
	dnsAddr := netip.MustParseAddrPort(freePort(t, "udp"))
	// An upstream that refuses: a forwarded name counts an upstream error.
	deadUpstream := freePort(t, "udp")
	dnsRec := dns.New(slog.New(slog.DiscardHandler), dns.Options{Listen: []netip.AddrPort{dnsAddr}, Upstreams: []string{deadUpstream}})
	d, err := Open(Config{DataDir: dir, Log: slog.New(slog.DiscardHandler), NoDataPlane: true, MetricsListen: "127.0.0.1:0",
		Reconcilers: []effects.Reconciler{dnsRec}})
	if err != nil {
		t.Fatal(err)
	}
	c := serveTest(t, d, dir)
	addr := waitMetricsAddr(t, d)
	waitUntil(t, "ready", func() bool { ok, _ := d.Readiness(); return ok })

	ctx := context.Background()
	call(t, c, ipc.SetupGlobalOverlay{Deployment: "prod", InstanceID: "1", ClusterCIDR: "10.200.0.0/16", WgPort: 51820})
	call(t, c, ipc.SetupServiceOverlay{Service: "web", Mode: ipc.ModeShared})
	call(t, c, ipc.AllocateIP{Service: "web"})
	call(t, c, ipc.AllocateIP{})
	call(t, c, ipc.RegisterDNS{Name: "api.prod.local", IP: ipc.AddrOf(netipMust("10.200.1.9"))})
	peer, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	call(t, c, ipc.AddPeer{PeerSpec: ipc.PeerSpec{PublicKey: peer.PublicKey().String(), Endpoint: "192.0.2.7:51820", AllowedIPs: "10.200.9.0/24"}})
	call(t, c, ipc.Status{})
	if _, err := c.Call(ctx, ipc.ReleaseIP{IP: ipc.AddrOf(netipMust("192.0.2.1"))}); err == nil {
		t.Fatal("release of an address outside every pool was accepted")
	}
	// DNS: an overlay name over UDP and TCP, a missing one, a forwarded one.
	waitUntil(t, "the DNS server to answer", func() bool {
		m := new(mdns.Msg)
		m.SetQuestion("api.prod.local.", mdns.TypeA)
		r, err := mdns.Exchange(m, dnsAddr.String())
		return err == nil && r.Rcode == mdns.RcodeSuccess && len(r.Answer) == 1
	})
	for _, q := range []struct {
		name  string
		qtype uint16
		net   string
		rcode int
	}{
		{"api.prod.local.", mdns.TypeA, "tcp", mdns.RcodeSuccess},
		{"nope.prod.local.", mdns.TypeAAAA, "udp", mdns.RcodeNameError},
		{"example.com.", mdns.TypeA, "udp", mdns.RcodeServerFailure},
	} {
		m := new(mdns.Msg)
		m.SetQuestion(q.name, q.qtype)
		cl := mdns.Client{Net: q.net, Timeout: 5 * time.Second}
		r, _, err := cl.Exchange(m, dnsAddr.String())
		if err != nil || r.Rcode != q.rcode {
			t.Fatalf("%s %s over %s: %v %v, want rcode %d", q.name, mdns.TypeToString[q.qtype], q.net, r, err, q.rcode)
		}
	}
	// A frame that is no request: counted as op "invalid".
	raw, err := net.Dial("unix", filepath.Join(dir, "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"frame":"request","id":7,"request":{"op":"no_such_op"}}`)
	raw.Write(append([]byte{byte(len(body)), 0, 0, 0}, body...))
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	raw.Read(make([]byte, 512))
	raw.Close()

	code, text := metricstest.Get(t, addr, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d\n%s", code, text)
	}
	f := metricstest.Parse(t, text)
	eq := func(what string, got, want float64) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	atLeast := func(what string, got, want float64) {
		t.Helper()
		if got < want {
			t.Errorf("%s = %v, want at least %v", what, got, want)
		}
	}
	eq("build_info", f.Value(t, "overlayd_build_info", "protocol", "1"), 1)
	eq("ready", f.Value(t, "overlayd_ready"), 1)
	eq("degraded", f.Value(t, "overlayd_degraded"), 0)
	eq("phase serving", f.Value(t, "overlayd_phase", "phase", "serving"), 1)
	eq("phase replaying", f.Value(t, "overlayd_phase", "phase", "replaying"), 0)
	// Boot
	f.Family(t, "overlayd_boot_replay_duration_seconds")
	f.Family(t, "overlayd_boot_snapshot_load_duration_seconds")
	eq("boot replayed", f.Value(t, "overlayd_boot_replayed_events"), 0)
	// IPC
	eq("setup_global_overlay ok", f.Value(t, "overlayd_ipc_requests_total", "op", "setup_global_overlay", "result", "bridge_name"), 1)
	eq("allocate_ip", f.Value(t, "overlayd_ipc_requests_total", "op", "allocate_ip", "result", "ip"), 2)
	eq("release_ip err", f.Value(t, "overlayd_ipc_requests_total", "op", "release_ip", "result", "err"), 1)
	eq("status", f.Value(t, "overlayd_ipc_requests_total", "op", "status", "result", "status"), 1)
	eq("invalid", f.Value(t, "overlayd_ipc_requests_total", "op", "invalid", "result", "err"), 1)
	eq("add_peer duration count", f.Value(t, "overlayd_ipc_request_duration_seconds", "op", "add_peer"), 1)
	atLeast("open connections", f.Value(t, "overlayd_ipc_connections"), 1)
	eq("refused", f.Value(t, "overlayd_ipc_connections_refused_total", "reason", "limit"), 0)
	eq("evicted", f.Value(t, "overlayd_ipc_connections_evicted_total"), 0)
	// Journal: boot's node identity, then the scenario's events.
	head := f.Value(t, "overlayd_journal_head_sequence")
	atLeast("head", head, 7)
	eq("events by type sum = head", f.Sum("overlayd_journal_events_total"), head)
	eq("dns_registered events", f.Value(t, "overlayd_journal_events_total", "type", "dns_registered"), 1)
	eq("ip_reserved events", f.Value(t, "overlayd_journal_events_total", "type", "ip_reserved"), 2)
	commits := f.Value(t, "overlayd_journal_commits_total", "result", "ok")
	atLeast("commits", commits, 6)
	eq("commit histogram count", f.Value(t, "overlayd_journal_commit_duration_seconds"), commits)
	atLeast("journal file bytes", f.Value(t, "overlayd_journal_file_size_bytes"), 4096)
	eq("journal degraded", f.Value(t, "overlayd_journal_degraded"), 0)
	// WireGuard: the device's peers come from the state (no data plane here).
	eq("wireguard peers", f.Value(t, "overlayd_wireguard_peers"), 1)
	// IPAM: the slice (node address, a reservation) and web's subnet
	// (gateway, a reservation).
	eq("slice used", f.Value(t, "overlayd_ipam_pool_used", "pool", "slice"), 2)
	eq("web used", f.Value(t, "overlayd_ipam_pool_used", "pool", "service:web"), 2)
	if cp := f.Value(t, "overlayd_ipam_pool_capacity", "pool", "service:web"); cp < 2 || cp > 1<<16 {
		t.Errorf("web's capacity = %v", cp)
	}
	eq("services", f.Value(t, "overlayd_services"), 1)
	eq("attachments", f.Value(t, "overlayd_attachments"), 0)
	// DNS
	eq("dns records", f.Value(t, "overlayd_dns_records"), 1)
	atLeast("A udp NOERROR", f.Value(t, "overlayd_dns_queries_total", "qtype", "A", "proto", "udp", "rcode", "NOERROR"), 1)
	eq("A tcp NOERROR", f.Value(t, "overlayd_dns_queries_total", "qtype", "A", "proto", "tcp", "rcode", "NOERROR"), 1)
	eq("AAAA NXDOMAIN", f.Value(t, "overlayd_dns_queries_total", "qtype", "AAAA", "proto", "udp", "rcode", "NXDOMAIN"), 1)
	eq("SERVFAIL", f.Value(t, "overlayd_dns_queries_total", "qtype", "A", "proto", "udp", "rcode", "SERVFAIL"), 1)
	atLeast("dns duration count", f.Value(t, "overlayd_dns_query_duration_seconds", "proto", "udp"), 3)
	atLeast("upstream errors", f.Value(t, "overlayd_dns_upstream_errors_total", "upstream", deadUpstream), 1)
	eq("forwarded", f.Value(t, "overlayd_dns_forwarded_total"), 1)
	// Reconcile
	atLeast("dns passes", f.Value(t, "overlayd_reconcile_passes_total", "reconciler", "dns", "result", "ok"), 2)
	atLeast("dns pass durations", f.Value(t, "overlayd_reconcile_pass_duration_seconds", "reconciler", "dns"), 2)
	// Process and runtime
	f.Family(t, "process_resident_memory_bytes")
	f.Family(t, "go_goroutines")

	metricstest.Promtool(t, text)
}

// slowStore holds boot at two points until the test lets it go: the
// history check's snapshot read (phase starting) and the replay (phase
// replaying).
type slowStore struct {
	journal.Store
	once1, once2 sync.Once
	atLoad       chan struct{}
	atIterate    chan struct{}
}

func (s *slowStore) LoadSnapshot() (*journal.Snapshot, error) {
	s.once1.Do(func() { <-s.atLoad })
	return s.Store.LoadSnapshot()
}

func (s *slowStore) Iterate(after uint64, verify bool, fn func(*journal.Envelope) error) error {
	s.once2.Do(func() { <-s.atIterate })
	return s.Store.Iterate(after, verify, fn)
}

// /readyz goes starting → replaying → ready → degraded (disk full) →
// ready, naming why at each step; /healthz answers all along.
func TestReadyzLifecycle(t *testing.T) {
	dir := t.TempDir()
	slow := &slowStore{Store: journal.NewMem(), atLoad: make(chan struct{}), atIterate: make(chan struct{})}
	store := journal.NewFaulty(slow)
	addr := freePort(t, "tcp")
	type opened struct {
		d   *Daemon
		err error
	}
	done := make(chan opened, 1)
	go func() {
		d, err := Open(Config{DataDir: dir, Log: slog.New(slog.DiscardHandler), NoDataPlane: true, Store: store, MetricsListen: addr})
		done <- opened{d, err}
	}()
	waitFor := func(what, path string, wantCode int, wantText string) string {
		t.Helper()
		var code int
		var body string
		waitUntil(t, what, func() bool {
			resp, err := (&httpClient).Get("http://" + addr + path)
			if err != nil {
				return false
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			code, body = resp.StatusCode, string(b)
			return code == wantCode && strings.Contains(body, wantText)
		})
		t.Logf("%s: %d %q", path, code, body)
		return body
	}
	waitFor("/healthz during boot", "/healthz", 200, "ok")
	waitFor("/readyz: starting", "/readyz", 503, "starting")
	close(slow.atLoad)
	waitFor("/readyz: replaying", "/readyz", 503, "replaying")
	code, text := metricstest.Get(t, addr, "/metrics")
	if f := metricstest.Parse(t, text); code != 200 || f.Value(t, "overlayd_phase", "phase", "replaying") != 1 || f.Value(t, "overlayd_ready") != 0 {
		t.Fatalf("/metrics while replaying: %d\n%s", code, text)
	}
	close(slow.atIterate)
	o := <-done
	if o.err != nil {
		t.Fatal(o.err)
	}
	d := o.d
	waitFor("/readyz: reconciled, not serving yet", "/readyz", 503, "reconciling")
	c := serveTest(t, d, dir)
	waitFor("/readyz: ready", "/readyz", 200, "ready")

	store.Break(errNoSpace)
	if e := register(t, c, "a.p.local"); !strings.Contains(e, "no space left on device") {
		t.Fatalf("a write on a full disk answered %q", e)
	}
	waitFor("/readyz: degraded", "/readyz", 503, "degraded: the journal is read-only")
	_, text = metricstest.Get(t, addr, "/metrics")
	f := metricstest.Parse(t, text)
	if f.Value(t, "overlayd_degraded") != 1 || f.Value(t, "overlayd_journal_degraded") != 1 || f.Value(t, "overlayd_ready") != 0 ||
		f.Value(t, "overlayd_journal_commits_total", "result", "error") < 1 {
		t.Fatalf("metrics on a full disk:\n%s", text)
	}
	store.Heal()
	waitFor("/readyz: ready again", "/readyz", 200, "ready")
	if e := register(t, c, "b.p.local"); e != "" {
		t.Fatalf("a write after recovery: %s", e)
	}
	d.Stop()
	<-d.Done()
	if _, err := (&httpClient).Get("http://" + addr + "/healthz"); err == nil {
		t.Fatal("the metrics server still answers after the stop")
	}
}

// A metrics address that cannot be bound leaves the daemon up: the
// problem "metrics" is listed (so it is not ready), and once the address
// is free the server binds and the problem goes.
func TestMetricsBindFailureDoesNotStopTheDaemon(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := taken.Addr().String()
	dir := t.TempDir()
	d, err := Open(Config{DataDir: dir, Log: slog.New(slog.DiscardHandler), NoDataPlane: true, MetricsListen: addr})
	if err != nil {
		t.Fatal(err)
	}
	c := serveTest(t, d, dir)
	waitUntil(t, "the metrics problem in status", func() bool {
		for _, p := range call(t, c, ipc.Status{}).(ipc.StatusResult).Problems {
			if p.Resource == "metrics" && strings.Contains(p.Error, "address already in use") {
				return true
			}
		}
		return false
	})
	waitUntil(t, "readiness to name the metrics listener", func() bool {
		ok, why := d.Readiness()
		return !ok && strings.Contains(strings.Join(why, " "), "degraded: metrics: listen tcp "+addr)
	})
	taken.Close()
	deadline := time.Now().Add(metrics.DefaultRetryEvery + 5*time.Second)
	for d.MetricsAddr() == "" {
		if time.Now().After(deadline) {
			t.Fatal("the metrics server did not bind once the address was free")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _ := metricstest.Get(t, addr, "/healthz"); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	waitUntil(t, "ready", func() bool { ok, _ := d.Readiness(); return ok })
}

var httpClient = http.Client{Timeout: 2 * time.Second}

// ipamState is a state whose node slice holds n owned addresses.
func ipamState(n int) *projections.State {
	st := projections.New()
	st.Global = &projections.Global{Slice: netip.MustParsePrefix("10.0.0.0/8")}
	a := netip.MustParseAddr("10.0.0.1")
	for range n {
		st.IPAM.Owners[a] = projections.Owner{Kind: projections.OwnerReservation, Pool: "slice"}
		a = a.Next()
	}
	st.Seq = uint64(n)
	return st
}

// The pools' use at 100,000 addresses: counted once per state change
// (the walk), reused while the state does not change.
func BenchmarkIPAMPools100k(b *testing.B) {
	st := ipamState(100_000)
	b.Run("changed", func(b *testing.B) {
		for b.Loop() {
			var c ipamCache
			if ps := c.pools(st); ps[0].Used != 100_000 {
				b.Fatal(ps)
			}
		}
	})
	b.Run("unchanged", func(b *testing.B) {
		var c ipamCache
		c.pools(st)
		for b.Loop() {
			c.pools(st)
		}
	})
}

func TestIPAMCacheFollowsTheState(t *testing.T) {
	st := ipamState(10)
	var c ipamCache
	if got := c.pools(st)[0]; got.Used != 10 || got.Capacity != 1<<24-2 {
		t.Fatalf("pools: %+v", got)
	}
	delete(st.IPAM.Owners, netip.MustParseAddr("10.0.0.1"))
	st.Seq++
	if got := c.pools(st)[0]; got.Used != 9 {
		t.Fatalf("after a release: %+v", got)
	}
}
