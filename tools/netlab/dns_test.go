//go:build linux

package netlab

import (
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/zlayer/overlayd/ipc"
)

// query asks server (ip:port) from inside the namespace at nsPath.
func query(t *testing.T, nsPath, server, name string, qtype uint16, network string) (*mdns.Msg, time.Duration) {
	t.Helper()
	q := new(mdns.Msg)
	q.SetQuestion(mdns.Fqdn(name), qtype)
	var m *mdns.Msg
	var took time.Duration
	err := InNetns(nsPath, func() error {
		var err error
		c := &mdns.Client{Net: network, Timeout: 4 * time.Second}
		m, took, err = c.Exchange(q, server)
		return err
	})
	if err != nil {
		t.Fatalf("query %s %s from %s: %v", name, mdns.TypeToString[qtype], nsPath, err)
	}
	return m, took
}

func rdata(m *mdns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *mdns.A:
			out = append(out, rr.A.String())
		case *mdns.AAAA:
			out = append(out, rr.AAAA.String())
		case *mdns.PTR:
			out = append(out, rr.Ptr)
		}
	}
	return out
}

func expectAnswer(t *testing.T, m *mdns.Msg, what string, want ...string) {
	t.Helper()
	got := rdata(m)
	if m.Rcode != mdns.RcodeSuccess || strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("%s: rcode %s, answer %v; want NOERROR %v\n%v", what, mdns.RcodeToString[m.Rcode], got, want, m)
	}
	for _, rr := range m.Answer {
		if m.Authoritative && rr.Header().Ttl > 5 { // forwarded answers keep the upstream's TTL
			t.Fatalf("%s: TTL %d > 5", what, rr.Header().Ttl)
		}
	}
}

func expectNX(t *testing.T, m *mdns.Msg, what string) {
	t.Helper()
	if m.Rcode != mdns.RcodeNameError || len(m.Ns) != 1 || m.Ns[0].Header().Rrtype != mdns.TypeSOA || !m.Authoritative {
		t.Fatalf("%s: want authoritative NXDOMAIN with an SOA, got\n%v", what, m)
	}
}

// A name registered with register_dns resolves from inside a container
// through the node's DNS (UDP and TCP, any case, relative to the zone);
// its PTR resolves; after unregister_dns it is NXDOMAIN; the answers are
// the same after a graceful restart and after kill -9.
func TestDNSFromContainer(t *testing.T) {
	l, nd, c := setUpNode(t)
	svc := call(t, c, ipc.SetupServiceOverlay{Service: "web", Mode: ipc.ModeShared}).(ipc.ServiceOverlay)
	gateway := net.JoinHostPort(svc.OverlayIP.String(), "53")
	ctr, err := l.NewContainer()
	if err != nil {
		t.Fatal(err)
	}
	st := call(t, c, ipc.Status{}).(ipc.StatusResult)
	nodeIP := st.NodeIP.String()
	domain := "overlay"
	r := call(t, c, ipc.AttachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformLinuxPID, PID: uint32(ctr.PID)},
		Service: "web", DNSServer: st.NodeIP, DNSDomain: &domain}).(ipc.Attached)
	ip := r.IP.String()
	call(t, c, ipc.RegisterDNS{Name: "web.service.local", IP: r.IP})
	call(t, c, ipc.RegisterDNS{Name: "api", IP: ipc.Addr{Addr: netip.MustParseAddr("fd00::7")}})
	call(t, c, ipc.RegisterDNS{Name: "api", IP: r.IP})
	server := net.JoinHostPort(nodeIP, "53")
	rev, _ := mdns.ReverseAddr(ip)

	check := func(stage string) {
		t.Helper()
		for _, network := range []string{"udp", "tcp"} {
			m, _ := query(t, ctr.NetnsPath(), server, "web.service.local", mdns.TypeA, network)
			expectAnswer(t, m, stage+" "+network+" web.service.local A", ip)
			if !m.Authoritative {
				t.Fatalf("%s: not authoritative", stage)
			}
		}
		m, _ := query(t, ctr.NetnsPath(), server, "WEB.Service.Local", mdns.TypeA, "udp")
		expectAnswer(t, m, stage+" mixed case", ip)
		m, _ = query(t, ctr.NetnsPath(), server, "api.overlay", mdns.TypeA, "udp")
		expectAnswer(t, m, stage+" api in the zone", ip)
		m, _ = query(t, ctr.NetnsPath(), server, "api.overlay", mdns.TypeAAAA, "udp")
		expectAnswer(t, m, stage+" api AAAA", "fd00::7")
		m, _ = query(t, ctr.NetnsPath(), server, rev, mdns.TypePTR, "udp")
		expectAnswer(t, m, stage+" PTR", "api.overlay.", "web.service.local.")
		m, _ = query(t, ctr.NetnsPath(), server, "nobody.overlay", mdns.TypeA, "udp")
		expectNX(t, m, stage+" unknown name in the zone")
		// The deployment's zone works too.
		m, _ = query(t, ctr.NetnsPath(), server, "api.lab.local", mdns.TypeA, "udp")
		expectAnswer(t, m, stage+" api.lab.local", ip)
		// The container's default gateway answers too.
		m, _ = query(t, ctr.NetnsPath(), gateway, "web.service.local", mdns.TypeA, "udp")
		expectAnswer(t, m, stage+" through the gateway", ip)
	}
	check("registered")
	t.Run("dig", func(t *testing.T) {
		// The stub a container's tools use: dig (dnsutils) from inside it.
		if _, err := exec.LookPath("dig"); err != nil {
			t.Skip("dig is not installed (.ci/run installs dnsutils)")
		}
		out, err := ctr.Run(context.Background(), "dig", "+short", "+time=2", "+tries=1", "@"+nodeIP, "web.service.local")
		if err != nil || strings.TrimSpace(out) != ip {
			t.Fatalf("dig web.service.local: %q %v", out, err)
		}
		out, err = ctr.Run(context.Background(), "dig", "+short", "+time=2", "+tries=1", "@"+nodeIP, "-x", ip)
		if err != nil || !strings.Contains(out, "web.service.local.") {
			t.Fatalf("dig -x %s: %q %v", ip, out, err)
		}
	})
	call(t, c, ipc.UnregisterDNS{Name: "web.service.local"})
	m, _ := query(t, ctr.NetnsPath(), server, "web.service.local", mdns.TypeA, "udp")
	expectNX(t, m, "after unregister_dns")
	m, _ = query(t, ctr.NetnsPath(), server, rev, mdns.TypePTR, "udp")
	expectAnswer(t, m, "PTR after unregister_dns", "api.overlay.")
	call(t, c, ipc.RegisterDNS{Name: "web.service.local", IP: r.IP})

	// The node-local address answers loopback clients.
	m, _ = query(t, nd.NetnsPath(), "127.0.0.1:53", "web.service.local", mdns.TypeA, "udp")
	expectAnswer(t, m, "loopback client", ip)

	c.Close()
	if err := nd.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := nd.Start(); err != nil {
		t.Fatal(err)
	}
	check("after restart")
	nd.Kill9()
	if err := nd.Start(); err != nil {
		t.Fatal(err)
	}
	check("after kill -9")
}

// staticDNS answers every A query for the names it holds and NXDOMAIN
// otherwise.
type staticDNS map[string]string

func (s staticDNS) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	m := new(mdns.Msg)
	m.SetReply(r)
	if ip, ok := s[strings.ToLower(r.Question[0].Name)]; ok {
		rr, _ := mdns.NewRR(r.Question[0].Name + " 30 IN A " + ip)
		m.Answer = append(m.Answer, rr)
	} else {
		m.Rcode = mdns.RcodeNameError
	}
	w.WriteMsg(m)
}

// Names outside the overlay go to the upstream (a DNS server the test
// runs in another namespace); with the upstream stopped the answer is
// SERVFAIL within 2 s; a client outside the overlay gets REFUSED.
func TestDNSForwardingAndRefused(t *testing.T) {
	// The upstreams come from a resolv.conf that first names only a
	// loopback stub (skipped: it would loop back to the node).
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 127.0.0.53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l := newLab(t, 1, "--resolv-conf", resolv)
	up, err := l.AddHost(netip.MustParseAddr("172.31.0.200"))
	if err != nil {
		t.Fatal(err)
	}
	var srv *mdns.Server
	if err := InNetns(up.NetnsPath(), func() error {
		pc, err := net.ListenPacket("udp", "172.31.0.200:53")
		if err != nil {
			return err
		}
		srv = &mdns.Server{PacketConn: pc, Handler: staticDNS{"example.test.": "198.51.100.7"}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	go srv.ActivateAndServe()
	defer srv.Shutdown()

	nd := l.Nodes[0]
	if err := nd.Start(); err != nil {
		t.Fatal(err)
	}
	c := client(t, nd, nil)
	info, err := nd.Setup(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	call(t, c, ipc.SetupServiceOverlay{Service: "web", Mode: ipc.ModeShared})
	ctr, err := l.NewContainer()
	if err != nil {
		t.Fatal(err)
	}
	attach(t, c, ctr, "web")
	server := net.JoinHostPort(info.NodeIP, "53")

	m, _ := query(t, ctr.NetnsPath(), server, "example.test", mdns.TypeA, "udp")
	if m.Rcode != mdns.RcodeServerFailure {
		t.Fatalf("no usable upstream: want SERVFAIL, got %s", mdns.RcodeToString[m.Rcode])
	}
	// resolv.conf changes: a forwarded query notices within a second.
	if err := os.WriteFile(resolv, []byte("search lab\nnameserver 127.0.0.53\nnameserver 172.31.0.200\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(3 * time.Second); ; {
		m, _ = query(t, ctr.NetnsPath(), server, "example.test", mdns.TypeA, "udp")
		if m.Rcode == mdns.RcodeSuccess || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	expectAnswer(t, m, "forwarded name", "198.51.100.7")
	if m.Authoritative {
		t.Fatal("a forwarded answer is marked authoritative")
	}
	m, _ = query(t, ctr.NetnsPath(), server, "missing.test", mdns.TypeA, "udp")
	if m.Rcode != mdns.RcodeNameError {
		t.Fatalf("upstream NXDOMAIN: got %s", mdns.RcodeToString[m.Rcode])
	}

	// A client outside the overlay: the upstream host, routed to the
	// node's overlay address through the node.
	if _, err := up.Run(context.Background(), "ip", "route", "add", info.NodeIP+"/32", "via", nd.Underlay.String()); err != nil {
		t.Fatal(err)
	}
	m, _ = query(t, up.NetnsPath(), server, "example.test", mdns.TypeA, "udp")
	if m.Rcode != mdns.RcodeRefused || len(m.Answer) != 0 {
		t.Fatalf("outside client: want REFUSED without answers, got\n%v", m)
	}
	m, _ = query(t, up.NetnsPath(), server, "example.test", mdns.TypeA, "tcp")
	if m.Rcode != mdns.RcodeRefused {
		t.Fatalf("outside client over TCP: %s", mdns.RcodeToString[m.Rcode])
	}

	// The upstream goes away: SERVFAIL, within 2 s. First the server
	// stops (its port is closed), then the whole host disappears (a black
	// hole: no answer at all).
	srv.Shutdown()
	m, took := query(t, ctr.NetnsPath(), server, "example.test", mdns.TypeA, "udp")
	if m.Rcode != mdns.RcodeServerFailure || took > 2*time.Second {
		t.Fatalf("upstream stopped: %s after %v; want SERVFAIL within 2 s", mdns.RcodeToString[m.Rcode], took)
	}
	t.Logf("upstream stopped: SERVFAIL after %v", took.Round(time.Millisecond))
	if _, err := up.Run(context.Background(), "ip", "link", "set", "ul0", "down"); err != nil {
		t.Fatal(err)
	}
	m, took = query(t, ctr.NetnsPath(), server, "example.test", mdns.TypeA, "udp")
	if m.Rcode != mdns.RcodeServerFailure || took > 2*time.Second {
		t.Fatalf("upstream unreachable: %s after %v; want SERVFAIL within 2 s", mdns.RcodeToString[m.Rcode], took)
	}
	t.Logf("upstream unreachable: SERVFAIL after %v", took.Round(time.Millisecond))
	// Overlay names still answer.
	call(t, c, ipc.RegisterDNS{Name: "db", IP: ipc.Addr{Addr: netip.MustParseAddr(info.NodeIP)}})
	m, _ = query(t, ctr.NetnsPath(), server, "db.lab.local", mdns.TypeA, "udp")
	expectAnswer(t, m, "overlay name with the upstream gone", info.NodeIP)
}

// A service's gateway answers DNS while the service exists; its sockets go
// with it (nothing is left listening), over repeated setups and teardowns.
func TestDNSGatewayListenersFollowServices(t *testing.T) {
	_, nd, c := setUpNode(t)
	ctx := context.Background()
	listening := func() string {
		out, err := nd.Run(ctx, "ss", "-Hlnu")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	for i := 0; i < 5; i++ {
		svc := call(t, c, ipc.SetupServiceOverlay{Service: "tmp", Mode: ipc.ModeShared}).(ipc.ServiceOverlay)
		gw := net.JoinHostPort(svc.OverlayIP.String(), "53")
		if !strings.Contains(listening(), gw) {
			t.Fatalf("round %d: nothing listens on %s:\n%s", i, gw, listening())
		}
		m, _ := query(t, nd.NetnsPath(), gw, "nothing.lab.local", mdns.TypeA, "udp")
		expectNX(t, m, "through the new gateway")
		call(t, c, ipc.TeardownServiceOverlay{Service: "tmp"})
		if out := listening(); strings.Contains(out, gw) {
			t.Fatalf("round %d: %s still listens after teardown:\n%s", i, gw, out)
		}
	}
}
