package dns

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/zlayer/overlayd/projections"
)

var (
	node    = netip.MustParseAddr("10.200.0.1")
	inSlice = netip.MustParseAddr("10.200.0.7")
	inSvc   = netip.MustParseAddr("10.200.1.5")
	remote  = netip.MustParseAddr("10.200.9.9") // another node's slice
	outside = netip.MustParseAddr("192.0.2.1")
)

func testServer(t testing.TB) *Server {
	t.Helper()
	s := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)))
	s.SetConfig(Config{
		Zones:   []string{"lab.local."},
		Clients: []netip.Prefix{netip.MustParsePrefix("10.200.0.0/24"), netip.MustParsePrefix("10.200.1.0/28"), netip.MustParsePrefix("10.200.0.1/32")},
		Reverse: []netip.Prefix{netip.MustParsePrefix("10.200.0.0/16")},
		Serial:  42,
	})
	s.Set("web.service.local", &projections.DNSRecord{V4: netip.MustParseAddr("10.200.1.2"), V6: netip.MustParseAddr("fd00::2")})
	s.Set("db", &projections.DNSRecord{V4: netip.MustParseAddr("10.200.1.3")})
	s.Set("api.example.org", &projections.DNSRecord{V4: netip.MustParseAddr("10.200.1.4")})
	return s
}

func ask(s *Server, name string, qtype uint16, client netip.Addr) *mdns.Msg {
	q := new(mdns.Msg)
	q.SetQuestion(name, qtype)
	return s.Answer(q, client, false)
}

func TestAuthoritativeAnswers(t *testing.T) {
	s := testServer(t)
	cases := []struct {
		name   string
		qtype  uint16
		rcode  int
		answer []string // rdata, in order
		soa    string   // owner of the SOA in the authority section, "" = none
	}{
		{"web.service.local.", mdns.TypeA, mdns.RcodeSuccess, []string{"10.200.1.2"}, ""},
		{"WEB.Service.LOCAL.", mdns.TypeA, mdns.RcodeSuccess, []string{"10.200.1.2"}, ""},
		{"web.service.local.", mdns.TypeAAAA, mdns.RcodeSuccess, []string{"fd00::2"}, ""},
		{"web.service.local.", mdns.TypeANY, mdns.RcodeSuccess, []string{"10.200.1.2", "fd00::2"}, ""},
		{"web.service.local.", mdns.TypeMX, mdns.RcodeSuccess, nil, "service.local."},
		{"db.lab.local.", mdns.TypeA, mdns.RcodeSuccess, []string{"10.200.1.3"}, ""},
		{"db.", mdns.TypeA, mdns.RcodeSuccess, []string{"10.200.1.3"}, ""},
		{"db.lab.local.", mdns.TypeAAAA, mdns.RcodeSuccess, nil, "lab.local."},
		{"nope.lab.local.", mdns.TypeA, mdns.RcodeNameError, nil, "lab.local."},
		{"lab.local.", mdns.TypeSOA, mdns.RcodeSuccess, []string{"SOA"}, ""},
		{"gone.service.local.", mdns.TypeA, mdns.RcodeNameError, nil, "local."},
		{"api.example.org.", mdns.TypeA, mdns.RcodeSuccess, []string{"10.200.1.4"}, ""},
		{"2.1.200.10.in-addr.arpa.", mdns.TypePTR, mdns.RcodeSuccess, []string{"web.service.local."}, ""},
		{"3.1.200.10.in-addr.arpa.", mdns.TypePTR, mdns.RcodeSuccess, []string{"db.lab.local."}, ""},
		{"9.9.200.10.in-addr.arpa.", mdns.TypePTR, mdns.RcodeNameError, nil, "200.10.in-addr.arpa."},
		{"2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", mdns.TypePTR, mdns.RcodeSuccess, []string{"web.service.local."}, ""},
	}
	for _, c := range cases {
		m := ask(s, c.name, c.qtype, inSlice)
		if m.Rcode != c.rcode {
			t.Errorf("%s %s: rcode %s, want %s", c.name, mdns.TypeToString[c.qtype], mdns.RcodeToString[m.Rcode], mdns.RcodeToString[c.rcode])
			continue
		}
		if !m.Authoritative {
			t.Errorf("%s: not authoritative", c.name)
		}
		for _, rr := range m.Answer {
			if rr.Header().Ttl > TTL {
				t.Errorf("%s: TTL %d > %d", c.name, rr.Header().Ttl, TTL)
			}
			if rr.Header().Name != c.name {
				t.Errorf("%s: owner %q does not echo the question", c.name, rr.Header().Name)
			}
		}
		got := answers(m)
		if !slices.Equal(got, c.answer) {
			t.Errorf("%s %s: answer %v, want %v", c.name, mdns.TypeToString[c.qtype], got, c.answer)
		}
		soa := ""
		if len(m.Ns) == 1 {
			if s, ok := m.Ns[0].(*mdns.SOA); ok {
				soa = s.Hdr.Name
				if s.Minttl > TTL || s.Hdr.Ttl > TTL {
					t.Errorf("%s: SOA TTLs %d/%d > %d", c.name, s.Hdr.Ttl, s.Minttl, TTL)
				}
			}
		}
		if soa != c.soa {
			t.Errorf("%s %s: authority SOA %q, want %q", c.name, mdns.TypeToString[c.qtype], soa, c.soa)
		}
	}
}

func TestUnregisterAndReplace(t *testing.T) {
	s := testServer(t)
	s.Set("db", &projections.DNSRecord{V4: netip.MustParseAddr("10.200.1.9")})
	if m := ask(s, "db.lab.local.", mdns.TypeA, inSlice); len(m.Answer) != 1 || m.Answer[0].(*mdns.A).A.String() != "10.200.1.9" {
		t.Fatalf("after replace: %v", m.Answer)
	}
	if m := ask(s, "3.1.200.10.in-addr.arpa.", mdns.TypePTR, inSlice); m.Rcode != mdns.RcodeNameError {
		t.Fatalf("old address still has a PTR: %v", m)
	}
	// Register replaces the address of its family only (dns_registered).
	s.Register("db", netip.MustParseAddr("fd00::9"))
	s.Register("db", netip.MustParseAddr("10.200.1.10"))
	if m := ask(s, "db.lab.local.", mdns.TypeANY, inSlice); strings.Join(answers(m), ",") != "10.200.1.10,fd00::9" {
		t.Fatalf("after register v6, v4: %v", answers(m))
	}
	if m := ask(s, "9.1.200.10.in-addr.arpa.", mdns.TypePTR, inSlice); m.Rcode != mdns.RcodeNameError {
		t.Fatalf("the replaced address keeps its PTR: %v", m)
	}
	s.Set("db", nil)
	if m := ask(s, "db.lab.local.", mdns.TypeA, inSlice); m.Rcode != mdns.RcodeNameError {
		t.Fatalf("unregistered name: rcode %s", mdns.RcodeToString[m.Rcode])
	}
	if m := ask(s, "9.1.200.10.in-addr.arpa.", mdns.TypePTR, inSlice); m.Rcode != mdns.RcodeNameError {
		t.Fatalf("unregistered name keeps its PTR: %v", m)
	}
}

func TestOnlyOverlayAndLoopbackClients(t *testing.T) {
	s := testServer(t)
	for _, c := range []struct {
		client netip.Addr
		ok     bool
	}{
		{inSlice, true}, {inSvc, true}, {node, true}, {netip.MustParseAddr("127.0.0.1"), true}, {netip.MustParseAddr("::1"), true},
		{remote, false}, {outside, false}, {netip.MustParseAddr("10.200.1.17"), false},
	} {
		m := ask(s, "web.service.local.", mdns.TypeA, c.client)
		if got := m.Rcode != mdns.RcodeRefused; got != c.ok {
			t.Errorf("client %s: rcode %s, answered=%v want %v", c.client, mdns.RcodeToString[m.Rcode], got, c.ok)
		}
		if !c.ok && len(m.Answer) > 0 {
			t.Errorf("client %s: refused but got %v", c.client, m.Answer)
		}
	}
	// Forwarded names are refused too: never an open resolver.
	s.SetUpstreams([]string{"127.0.0.1:1"})
	if m := ask(s, "example.com.", mdns.TypeA, outside); m.Rcode != mdns.RcodeRefused || s.Forwarded.Load() != 0 {
		t.Fatalf("outside client: rcode %s, forwarded %d", mdns.RcodeToString[m.Rcode], s.Forwarded.Load())
	}
}

// serveOn runs h on a loopback UDP and TCP port and returns the address.
func serveOn(t *testing.T, h mdns.Handler) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	u := &mdns.Server{PacketConn: pc, Handler: h}
	tc := &mdns.Server{Listener: tl, Handler: h}
	if err := serve(u); err != nil {
		t.Fatal(err)
	}
	if err := serve(tc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Shutdown(); tc.Shutdown() })
	return pc.LocalAddr().String()
}

func TestTruncationAndTCPFallback(t *testing.T) {
	s := testServer(t)
	ip := netip.MustParseAddr("10.200.1.2")
	for i := 0; i < 60; i++ {
		s.Set(fmt.Sprintf("a-rather-long-service-name-%02d.service.local", i), &projections.DNSRecord{V4: ip})
	}
	addr := listenFree(t, s)
	q := new(mdns.Msg)
	q.SetQuestion("2.1.200.10.in-addr.arpa.", mdns.TypePTR)
	m, _, err := (&mdns.Client{Net: "udp"}).Exchange(q, addr)
	if err != nil {
		t.Fatal(err)
	}
	m.Compress = true // as it came on the wire
	if !m.Truncated || m.Len() > 512 {
		t.Fatalf("UDP answer without EDNS: TC=%v, %d bytes (want TC, <= 512)", m.Truncated, m.Len())
	}
	q.SetEdns0(4096, false)
	m, _, err = (&mdns.Client{Net: "udp", UDPSize: 4096}).Exchange(q, addr)
	if err != nil {
		t.Fatal(err)
	}
	m.Compress = true
	if !m.Truncated || m.Len() > ednsSize || m.IsEdns0() == nil || m.IsEdns0().UDPSize() != ednsSize {
		t.Fatalf("UDP answer with EDNS 4096: TC=%v, %d bytes, opt %v (want TC, <= %d, OPT %d)", m.Truncated, m.Len(), m.IsEdns0(), ednsSize, ednsSize)
	}
	m, _, err = (&mdns.Client{Net: "tcp"}).Exchange(q, addr)
	if err != nil {
		t.Fatal(err)
	}
	if m.Truncated || len(m.Answer) != 61 {
		t.Fatalf("TCP answer: TC=%v, %d PTRs (want 61)", m.Truncated, len(m.Answer))
	}
}

type staticUpstream map[string]string

func (u staticUpstream) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	m := new(mdns.Msg)
	m.SetReply(r)
	if ip, ok := u[r.Question[0].Name]; ok {
		rr, _ := mdns.NewRR(r.Question[0].Name + " 60 IN A " + ip)
		m.Answer = append(m.Answer, rr)
	} else {
		m.Rcode = mdns.RcodeNameError
	}
	w.WriteMsg(m)
}

func TestForwarding(t *testing.T) {
	s := testServer(t)
	up := serveOn(t, staticUpstream{"example.com.": "192.0.2.80"})
	hole := blackHole(t)
	s.SetUpstreams([]string{hole, up})
	t0 := time.Now()
	m := ask(s, "example.com.", mdns.TypeA, inSvc)
	if m.Rcode != mdns.RcodeSuccess || len(m.Answer) != 1 || m.Answer[0].(*mdns.A).A.String() != "192.0.2.80" {
		t.Fatalf("forwarded answer: %v", m)
	}
	if m.Authoritative {
		t.Error("a forwarded answer is marked authoritative")
	}
	t.Logf("answer past a dead first upstream after %v", time.Since(t0).Round(time.Millisecond))
	if m := ask(s, "nothing.example.com.", mdns.TypeA, inSvc); m.Rcode != mdns.RcodeNameError {
		t.Fatalf("upstream NXDOMAIN not passed on: %s", mdns.RcodeToString[m.Rcode])
	}

	// Every upstream dead: SERVFAIL, within the budget.
	s.SetUpstreams([]string{hole})
	t0 = time.Now()
	m = ask(s, "example.com.", mdns.TypeA, inSvc)
	took := time.Since(t0)
	if m.Rcode != mdns.RcodeServerFailure {
		t.Fatalf("dead upstream: rcode %s, want SERVFAIL", mdns.RcodeToString[m.Rcode])
	}
	if took > 2*time.Second {
		t.Fatalf("SERVFAIL took %v (> 2 s)", took)
	}
	// A refused port fails at once.
	s.SetUpstreams([]string{"127.0.0.1:1"})
	t0 = time.Now()
	if m := ask(s, "example.com.", mdns.TypeA, inSvc); m.Rcode != mdns.RcodeServerFailure {
		t.Fatalf("closed upstream: rcode %s", mdns.RcodeToString[m.Rcode])
	}
	if took := time.Since(t0); took > 900*time.Millisecond { // well under the 1 s a silent upstream costs
		t.Errorf("closed upstream took %v", took)
	}
	// Overlay names are never forwarded.
	n := s.Forwarded.Load()
	ask(s, "nope.lab.local.", mdns.TypeA, inSvc)
	ask(s, "x.y.local.", mdns.TypeA, inSvc)
	ask(s, "5.5.200.10.in-addr.arpa.", mdns.TypePTR, inSvc)
	if s.Forwarded.Load() != n {
		t.Fatal("an overlay name was forwarded")
	}
}

func TestBadEDNSVersion(t *testing.T) {
	s := testServer(t)
	q := new(mdns.Msg)
	q.SetQuestion("db.lab.local.", mdns.TypeA)
	q.SetEdns0(1232, false)
	q.IsEdns0().SetVersion(1)
	m := s.Answer(q, inSlice, false)
	if m.Rcode != mdns.RcodeBadVers {
		t.Fatalf("EDNS version 1: rcode %d, want BADVERS", m.Rcode)
	}
}

func TestParseResolvConf(t *testing.T) {
	got := ParseResolvConf([]byte("# c\nnameserver 127.0.0.53\nnameserver 10.255.255.53\nsearch x\nnameserver ::1\nnameserver 2001:db8::1\nnameserver bogus\n"))
	want := []string{"10.255.255.53:53", "[2001:db8::1]:53"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestReverseNames(t *testing.T) {
	for _, c := range []struct{ p, zone string }{
		{"10.200.0.0/16", "200.10.in-addr.arpa."},
		{"10.200.1.0/28", "1.200.10.in-addr.arpa."},
		{"fd00::/120", strings.Repeat("0.", 28) + "d.f.ip6.arpa."},
	} {
		if z := reverseZone(netip.MustParsePrefix(c.p)); z != c.zone {
			t.Errorf("%s: %s, want %s", c.p, z, c.zone)
		}
	}
	for _, bad := range []string{"1.2.3.in-addr.arpa.", "x.2.3.4.in-addr.arpa.", "256.2.3.4.in-addr.arpa.",
		"1.0.ip6.arpa.", strings.Repeat("g.", 32) + "ip6.arpa.", "example.org."} {
		if a, ok := reverseAddr(bad); ok {
			t.Errorf("%s parsed as %s", bad, a)
		}
	}
	for _, a := range []string{"10.200.1.2", "fd00::1:2", "2001:db8::abcd"} {
		ip := netip.MustParseAddr(a)
		r, _ := mdns.ReverseAddr(a)
		got, ok := reverseAddr(r)
		if !ok || got != ip {
			t.Errorf("%s: %s parsed as %v %v", a, r, got, ok)
		}
	}
}

// listenFree serves s with the daemon's listener (its own UDP loop, the
// miekg TCP server) on a free loopback port.
func listenFree(t *testing.T, s *Server) string {
	t.Helper()
	for i := 0; ; i++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ap := netip.MustParseAddrPort(pc.LocalAddr().String())
		pc.Close()
		l, err := listen(ap, s)
		if err != nil {
			if i < 10 {
				continue
			}
			t.Fatal(err)
		}
		t.Cleanup(l.close)
		return ap.String()
	}
}

func TestUDPLoop(t *testing.T) {
	s := testServer(t)
	up := serveOn(t, staticUpstream{"example.com.": "192.0.2.80"})
	hole, asked := listeningBlackHole(t)
	s.SetUpstreams([]string{hole, up})
	addr := listenFree(t, s)
	// A forwarded query that waits on a dead upstream does not hold back
	// overlay answers.
	slow := make(chan *mdns.Msg, 1)
	go func() {
		q := new(mdns.Msg)
		q.SetQuestion("example.com.", mdns.TypeA)
		m, _, err := (&mdns.Client{Timeout: 3 * time.Second}).Exchange(q, addr)
		if err != nil {
			t.Error(err)
		}
		slow <- m
	}()
	// The forward is waiting once the dead upstream has its query; it
	// waits there for forwardTry (1 s) before it asks the live one.
	select {
	case <-asked:
	case <-time.After(5 * time.Second):
		t.Fatal("the forwarded query never reached the dead upstream")
	}
	for i := 0; i < 50; i++ {
		q := new(mdns.Msg)
		q.SetQuestion("db.lab.local.", mdns.TypeA)
		m, rtt, err := (&mdns.Client{Timeout: time.Second}).Exchange(q, addr)
		if err != nil || len(m.Answer) != 1 || rtt > 500*time.Millisecond { // not held behind the 1 s forward
			t.Fatalf("overlay answer while a forward waits: %v %v %v", m, rtt, err)
		}
	}
	// Those answers came while the forward still waited: otherwise they
	// show nothing about being held back.
	select {
	case m := <-slow:
		t.Fatalf("the forward was answered (%v) before the overlay queries were done: they did not overlap it", m)
	default:
	}
	if m := <-slow; m == nil || len(m.Answer) != 1 {
		t.Fatalf("forwarded answer: %v", m)
	}
	// Garbage with a readable header gets FORMERR; shorter garbage nothing.
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xff})
	buf := make([]byte, 512)
	c.SetReadDeadline(time.Now().Add(time.Second))
	n, err := c.Read(buf)
	if err != nil || n != 12 || buf[0] != 0xab || buf[1] != 0xcd || buf[3]&0x0f != mdns.RcodeFormatError {
		t.Fatalf("garbage: %x %v", buf[:n], err)
	}
}

func answers(m *mdns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *mdns.A:
			out = append(out, rr.A.String())
		case *mdns.AAAA:
			out = append(out, rr.AAAA.String())
		case *mdns.PTR:
			out = append(out, rr.Ptr)
		case *mdns.SOA:
			out = append(out, "SOA")
		}
	}
	return out
}

func TestUpstreamsFromResolvConf(t *testing.T) {
	dir := t.TempDir()
	etc, systemd := dir+"/resolv.conf", dir+"/systemd-resolv.conf"
	write := func(path, text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(etc, "nameserver 127.0.0.53\noptions edns0\n")
	write(systemd, "nameserver 192.0.2.53\nnameserver 192.0.2.54\n")
	r := New(slog.New(slog.NewTextHandler(io.Discard, nil)), Options{ResolvConf: etc})
	r.rcFiles = []string{etc, systemd} // as for the default /etc/resolv.conf
	r.refreshUpstreams()
	if got := r.srv.Upstreams(); strings.Join(got, ",") != "192.0.2.53:53,192.0.2.54:53" {
		t.Fatalf("stub only: %v, want systemd-resolved's upstreams", got)
	}
	// The file changes: a real upstream there wins. (The change is seen
	// by its modification time and size; the time is set a second on
	// rather than waited for.)
	fi, err := os.Stat(etc)
	if err != nil {
		t.Fatal(err)
	}
	write(etc, "nameserver 198.51.100.1\n")
	later := fi.ModTime().Add(time.Second)
	if err := os.Chtimes(etc, later, later); err != nil {
		t.Fatal(err)
	}
	r.refreshUpstreams()
	if got := r.srv.Upstreams(); strings.Join(got, ",") != "198.51.100.1:53" {
		t.Fatalf("after the change: %v", got)
	}
	// --dns-upstream wins over both; the server's own addresses never count.
	r2 := New(slog.New(slog.NewTextHandler(io.Discard, nil)), Options{Upstreams: []string{"127.0.0.1:53", "192.0.2.9:53"},
		Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53")}})
	r2.self = []string{"127.0.0.1:53"}
	r2.refreshUpstreams()
	if got := r2.srv.Upstreams(); strings.Join(got, ",") != "192.0.2.9:53" {
		t.Fatalf("fixed upstreams: %v", got)
	}
}

// listeningBlackHole is an upstream that never answers but tells when a
// query reaches it: the channel has a value after the first one.
func listeningBlackHole(t *testing.T) (string, <-chan struct{}) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	asked := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 512)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return // closed
			}
			select {
			case asked <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return pc.LocalAddr().String(), asked
}

// blackHole is the address of a UDP socket that reads nothing back: an
// upstream that never answers.
func blackHole(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}
