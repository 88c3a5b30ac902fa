package dns

import (
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/zlayer/overlayd/projections"
)

// Forwarding limits: each upstream gets at most forwardTry, all of them
// together forwardBudget, so a dead upstream costs a client at most
// forwardBudget before its SERVFAIL (well inside a stub resolver's usual
// 2-5 s timeout).
const (
	forwardTry    = time.Second
	forwardBudget = 1500 * time.Millisecond
	// ednsSize is the UDP payload size the server advertises and the
	// largest UDP answer it sends (the 2020 DNS flag day's value).
	ednsSize = 1232
)

// Server answers DNS queries: authoritatively for the overlay zones and
// the overlay's reverse names, by forwarding for the rest, and only to
// clients on the node's overlay subnets or loopback. It is safe for
// concurrent use; records and config are swapped in while it serves.
type Server struct {
	log *slog.Logger

	mu    sync.RWMutex
	names map[string]record // lower case, no trailing dot
	rev   revIndex          // address -> names

	cfg atomic.Pointer[compiled]
	ups atomic.Pointer[[]string] // upstream "host:port"s, in order

	// Forwarded counts queries handed to upstreams (tests, metrics).
	Forwarded atomic.Uint64

	// meter, when set, is told of every answered query (metrics).
	meter atomic.Pointer[meterBox]

	// refresh, when set, re-reads the upstreams if their source changed;
	// forward calls it at most once a second.
	refresh     func()
	refreshedAt atomic.Int64
}

// compiled is a Config prepared for the answer path.
type compiled struct {
	Config
	// clients holds the allowed prefixes by length, so a check costs one
	// map lookup per distinct length rather than one per subnet.
	clients map[int]map[netip.Prefix]bool
	lens    []int
	listen  map[netip.Addr]bool
}

// Meter receives what the server counts, for metrics. Its methods are
// called on the answer path: they must be quick, must not block, and must
// be safe for concurrent use.
type Meter interface {
	// Query is called once per query answered: its type (0 when it had
	// no single question), whether it came over TCP, the answer's rcode,
	// and the time from reading it to the answer being packed.
	Query(qtype uint16, tcp bool, rcode int, took time.Duration)
	// UpstreamFailed is called for each exchange with an upstream that
	// failed (timeout, refused connection, unreadable answer).
	UpstreamFailed(upstream string)
}

type meterBox struct{ m Meter }

// SetMeter makes the server report to m (nil: to nobody). Safe to call
// while it serves.
func (s *Server) SetMeter(m Meter) {
	if m == nil {
		s.meter.Store(nil)
		return
	}
	s.meter.Store(&meterBox{m})
}

// meterOf is the server's meter, or nil.
func (s *Server) meterOf() Meter {
	if b := s.meter.Load(); b != nil {
		return b.m
	}
	return nil
}

// qtypeOf is r's question type, 0 when it has not exactly one.
func qtypeOf(r *mdns.Msg) uint16 {
	if len(r.Question) != 1 {
		return 0
	}
	return r.Question[0].Qtype
}

// NewServer returns a server with no records, no zones and no upstreams.
func NewServer(log *slog.Logger) *Server {
	s := &Server{log: log, names: map[string]record{}, rev: newRevIndex()}
	s.SetConfig(Config{})
	s.SetUpstreams(nil)
	return s
}

// SetConfig swaps in a new config.
func (s *Server) SetConfig(c Config) {
	cc := &compiled{Config: c, clients: map[int]map[netip.Prefix]bool{}, listen: map[netip.Addr]bool{}}
	for _, p := range c.Clients {
		m := cc.clients[p.Bits()]
		if m == nil {
			m = map[netip.Prefix]bool{}
			cc.clients[p.Bits()] = m
			cc.lens = append(cc.lens, p.Bits())
		}
		m[p.Masked()] = true
	}
	for _, ap := range c.Listen {
		cc.listen[ap.Addr()] = true
	}
	s.cfg.Store(cc)
}

// SetUpstreams swaps in the upstream resolvers ("host:port").
func (s *Server) SetUpstreams(ups []string) {
	ups = slices.Clone(ups)
	s.ups.Store(&ups)
}

// Upstreams returns the current upstream resolvers.
func (s *Server) Upstreams() []string { return slices.Clone(*s.ups.Load()) }

// record is a name's addresses in a form without pointers, so that the
// garbage collector does not scan the values of a large record map.
type record struct {
	v4     [4]byte
	v6     [16]byte
	has4   bool
	has6   bool
	unused [2]byte
}

func (r record) addrs() []netip.Addr {
	var out []netip.Addr
	if r.has4 {
		out = append(out, netip.AddrFrom4(r.v4))
	}
	if r.has6 {
		out = append(out, netip.AddrFrom16(r.v6))
	}
	return out
}

func (r *record) set(a netip.Addr) {
	if a.Is4() {
		r.v4, r.has4 = a.As4(), true
	} else {
		r.v6, r.has6 = a.As16(), true
	}
}

func toRecord(rec *projections.DNSRecord) record {
	var r record
	if rec.V4.IsValid() {
		r.set(rec.V4)
	}
	if rec.V6.IsValid() {
		r.set(rec.V6)
	}
	return r
}

// Set replaces the record of name (as projections normalizes it: lower
// case, no trailing dot); a nil rec removes the name.
func (s *Server) Set(name string, rec *projections.DNSRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec == nil {
		s.deleteLocked(name)
		return
	}
	s.setLocked(name, toRecord(rec))
}

// Register gives name the address a (replacing its address of that
// family), as the event dns_registered does.
func (s *Server) Register(name string, a netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.names[name]
	r.set(a.Unmap())
	s.setLocked(name, r)
}

// Replace swaps in a whole record set.
func (s *Server) Replace(recs map[string]*projections.DNSRecord) {
	names := make(map[string]record, len(recs))
	rev := newRevIndex()
	for name, rec := range recs {
		r := toRecord(rec)
		names[name] = r
		for _, a := range r.addrs() {
			rev.add(a.As16(), name)
		}
	}
	s.mu.Lock()
	s.names, s.rev = names, rev
	s.mu.Unlock()
}

// revIndex maps an address (16-byte form) to its names, sorted. Most
// addresses have one name: it is kept as a plain string (no allocation of
// its own, nothing more for the garbage collector to scan); a slice only
// for addresses with more.
type revIndex struct {
	one  map[[16]byte]string
	more map[[16]byte][]string
}

func newRevIndex() revIndex {
	return revIndex{one: map[[16]byte]string{}, more: map[[16]byte][]string{}}
}

func (x revIndex) add(k [16]byte, name string) {
	if ns, ok := x.more[k]; ok {
		if i, found := slices.BinarySearch(ns, name); !found {
			x.more[k] = slices.Insert(ns, i, name)
		}
		return
	}
	if o, ok := x.one[k]; ok {
		if o != name {
			delete(x.one, k)
			ns := []string{o, name}
			slices.Sort(ns)
			x.more[k] = ns
		}
		return
	}
	x.one[k] = name
}

func (x revIndex) remove(k [16]byte, name string) {
	if ns, ok := x.more[k]; ok {
		ns = slices.DeleteFunc(slices.Clone(ns), func(n string) bool { return n == name })
		if len(ns) == 1 {
			delete(x.more, k)
			x.one[k] = ns[0]
		} else {
			x.more[k] = ns
		}
		return
	}
	if x.one[k] == name {
		delete(x.one, k)
	}
}

// get returns k's names; the caller may keep the slice.
func (x revIndex) get(k [16]byte) []string {
	if ns, ok := x.more[k]; ok {
		return slices.Clone(ns)
	}
	if o, ok := x.one[k]; ok {
		return []string{o}
	}
	return nil
}

// Len returns the number of names.
func (s *Server) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.names)
}

func (s *Server) deleteLocked(name string) {
	old, ok := s.names[name]
	if !ok {
		return
	}
	for _, a := range old.addrs() {
		s.rev.remove(a.As16(), name)
	}
	delete(s.names, name)
}

func (s *Server) setLocked(name string, r record) {
	s.deleteLocked(name)
	s.names[name] = r
	for _, a := range r.addrs() {
		s.rev.add(a.As16(), name)
	}
}

// ServeDNS answers one query (mdns.Handler).
func (s *Server) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	meter := s.meterOf()
	var t0 time.Time
	if meter != nil {
		t0 = time.Now()
	}
	_, tcp := w.RemoteAddr().(*net.TCPAddr)
	m := s.Answer(r, addrOf(w.RemoteAddr()), tcp)
	if m != nil {
		if meter != nil {
			meter.Query(qtypeOf(r), tcp, m.Rcode, time.Since(t0))
		}
		w.WriteMsg(m)
	}
}

func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

// Answer returns the reply to r from client over UDP or TCP; nil means
// no reply is sent. It may forward, and so block for up to forwardBudget.
func (s *Server) Answer(r *mdns.Msg, client netip.Addr, tcp bool) *mdns.Msg {
	m, fwd := s.answerLocal(r, client, tcp)
	if fwd {
		return s.answerForward(r, client, tcp)
	}
	return m
}

// answerLocal answers r without forwarding; forward reports that r must
// go upstream instead (answerForward), and m is then nil.
func (s *Server) answerLocal(r *mdns.Msg, client netip.Addr, tcp bool) (m *mdns.Msg, forward bool) {
	if r.Response {
		return nil, false
	}
	cfg := s.cfg.Load()
	m = new(mdns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	opt := r.IsEdns0()
	switch {
	case !cfg.allowed(client):
		m.Rcode = mdns.RcodeRefused
	case opt != nil && opt.Version() != 0:
		m.SetRcode(r, mdns.RcodeBadVers)
		m.SetEdns0(ednsSize, false)
		return m, false
	case r.Opcode != mdns.OpcodeQuery:
		m.Rcode = mdns.RcodeNotImplemented
	case len(r.Question) != 1:
		m.Rcode = mdns.RcodeFormatError
	default:
		if !s.authoritative(cfg, r.Question[0], m) {
			return nil, true
		}
	}
	if opt != nil {
		m.SetEdns0(ednsSize, false)
	}
	if !tcp {
		truncate(m, udpSize(r))
	}
	return m, false
}

// answerForward asks the upstreams; SERVFAIL when none answers.
func (s *Server) answerForward(r *mdns.Msg, client netip.Addr, tcp bool) *mdns.Msg {
	m := s.forward(r, client, tcp)
	if m == nil {
		m = new(mdns.Msg)
		m.SetRcode(r, mdns.RcodeServerFailure)
		m.RecursionAvailable = true
		if r.IsEdns0() != nil {
			m.SetEdns0(ednsSize, false)
		}
	}
	m.Id = r.Id
	if !tcp {
		truncate(m, udpSize(r))
	}
	return m
}

// udpSize is the largest UDP answer r's sender takes.
func udpSize(r *mdns.Msg) int {
	if opt := r.IsEdns0(); opt != nil {
		return max(mdns.MinMsgSize, min(int(opt.UDPSize()), ednsSize))
	}
	return mdns.MinMsgSize
}

// truncate is m.Truncate(size), skipped when m surely fits: the common
// one-question, few-record answer (the bound counts every name
// uncompressed).
func truncate(m *mdns.Msg, size int) {
	n := 12 + 11 // header, OPT
	for _, q := range m.Question {
		n += len(q.Name) + 2 + 4
	}
	ok := len(m.Answer)+len(m.Ns)+len(m.Extra) <= 4
	for _, rrs := range [][]mdns.RR{m.Answer, m.Ns} {
		for _, rr := range rrs {
			n += len(rr.Header().Name) + 2 + 10
			switch rr := rr.(type) {
			case *mdns.A:
				n += 4
			case *mdns.AAAA:
				n += 16
			case *mdns.SOA:
				n += len(rr.Ns) + len(rr.Mbox) + 4 + 20
			default:
				ok = false
			}
		}
	}
	if ok && n <= size {
		return
	}
	m.Truncate(size)
}

func (c *compiled) allowed(a netip.Addr) bool {
	if a.IsLoopback() {
		return true
	}
	for _, l := range c.lens {
		p, err := a.Prefix(l)
		if err == nil && c.clients[l][p] {
			return true
		}
	}
	return false
}

// authoritative fills m when q is the server's to answer and reports
// whether it was.
func (s *Server) authoritative(cfg *compiled, q mdns.Question, m *mdns.Msg) bool {
	if q.Qclass != mdns.ClassINET && q.Qclass != mdns.ClassANY {
		return false
	}
	lq := strings.ToLower(q.Name)
	if len(lq) == 0 || lq[len(lq)-1] != '.' {
		lq += "."
	}
	key := lq[:len(lq)-1]
	s.mu.RLock()
	rec, ok := s.names[key]
	s.mu.RUnlock()
	if ok {
		s.records(cfg, q, rec, parent(lq), m)
		return true
	}
	for _, z := range cfg.Zones {
		if lq == z {
			m.Authoritative = true
			if q.Qtype == mdns.TypeSOA || q.Qtype == mdns.TypeANY {
				m.Answer = append(m.Answer, soa(z, z, cfg.Serial))
			} else {
				m.Ns = append(m.Ns, soa(z, z, cfg.Serial))
			}
			return true
		}
		if len(lq) > len(z) && lq[len(lq)-len(z)-1] == '.' && strings.HasSuffix(lq, z) {
			rel := lq[:len(lq)-len(z)-1]
			s.mu.RLock()
			rec, ok := s.names[rel]
			s.mu.RUnlock()
			if ok {
				s.records(cfg, q, rec, z, m)
			} else {
				s.nxdomain(cfg, z, m)
			}
			return true
		}
	}
	if a, ok := reverseAddr(lq); ok {
		s.mu.RLock()
		names := s.rev.get(a.As16())
		s.mu.RUnlock()
		zone := ""
		for _, p := range cfg.Reverse {
			if p.Contains(a) {
				zone = reverseZone(p)
				break
			}
		}
		if len(names) == 0 && zone == "" {
			return false // not ours: forward
		}
		if zone == "" {
			zone = lq
		}
		m.Authoritative = true
		if len(names) == 0 {
			s.nxdomain(cfg, zone, m)
			return true
		}
		if q.Qtype != mdns.TypePTR && q.Qtype != mdns.TypeANY {
			m.Ns = append(m.Ns, soa(zone, cfg.primary(), cfg.Serial))
			return true
		}
		for _, n := range names {
			m.Answer = append(m.Answer, &mdns.PTR{Hdr: hdr(q.Name, mdns.TypePTR), Ptr: cfg.target(n)})
		}
		return true
	}
	// Names under .local are link-local (RFC 6762): never sent upstream.
	if lq == "local." || strings.HasSuffix(lq, ".local.") {
		s.nxdomain(cfg, "local.", m)
		return true
	}
	return false
}

// records answers q from rec (qtype A, AAAA or ANY; NODATA for others).
func (s *Server) records(cfg *compiled, q mdns.Question, rec record, zone string, m *mdns.Msg) {
	m.Authoritative = true
	if (q.Qtype == mdns.TypeA || q.Qtype == mdns.TypeANY) && rec.has4 {
		m.Answer = append(m.Answer, &mdns.A{Hdr: hdr(q.Name, mdns.TypeA), A: net.IPv4(rec.v4[0], rec.v4[1], rec.v4[2], rec.v4[3])})
	}
	if (q.Qtype == mdns.TypeAAAA || q.Qtype == mdns.TypeANY) && rec.has6 {
		m.Answer = append(m.Answer, &mdns.AAAA{Hdr: hdr(q.Name, mdns.TypeAAAA), AAAA: append(net.IP(nil), rec.v6[:]...)})
	}
	if len(m.Answer) == 0 {
		m.Ns = append(m.Ns, soa(zone, cfg.primary(), cfg.Serial))
	}
}

func (s *Server) nxdomain(cfg *compiled, zone string, m *mdns.Msg) {
	m.Authoritative = true
	m.Rcode = mdns.RcodeNameError
	m.Ns = append(m.Ns, soa(zone, cfg.primary(), cfg.Serial))
}

func (c *compiled) primary() string {
	if len(c.Zones) > 0 {
		return c.Zones[0]
	}
	return "local."
}

// target is the absolute name a PTR points at: single-label names are
// qualified with the primary zone.
func (c *compiled) target(name string) string {
	if !strings.Contains(name, ".") {
		return name + "." + c.primary()
	}
	return name + "."
}

func hdr(name string, t uint16) mdns.RR_Header {
	return mdns.RR_Header{Name: name, Rrtype: t, Class: mdns.ClassINET, Ttl: TTL}
}

// soa is the SOA record of zone; its names live under the primary zone.
func soa(zone, primary string, serial uint32) *mdns.SOA {
	return &mdns.SOA{Hdr: hdr(zone, mdns.TypeSOA), Ns: "ns." + primary, Mbox: "hostmaster." + primary,
		Serial: serial, Refresh: 60, Retry: 10, Expire: 3600, Minttl: TTL}
}

// parent is the zone a registered name outside every overlay zone is
// answered from: its parent domain ("." for a single label).
func parent(fq string) string {
	if i := strings.IndexByte(fq, '.'); i >= 0 && i+1 < len(fq) {
		return fq[i+1:]
	}
	return "."
}

// reverseAddr parses an absolute, lower-case reverse name
// (d.c.b.a.in-addr.arpa. or the 32-nibble ip6.arpa. form).
func reverseAddr(lq string) (netip.Addr, bool) {
	var text string
	if s, ok := strings.CutSuffix(lq, ".in-addr.arpa."); ok {
		l := strings.Split(s, ".")
		if len(l) != 4 {
			return netip.Addr{}, false
		}
		slices.Reverse(l)
		text = strings.Join(l, ".")
	} else if s, ok := strings.CutSuffix(lq, ".ip6.arpa."); ok {
		l := strings.Split(s, ".")
		if len(l) != 32 {
			return netip.Addr{}, false
		}
		slices.Reverse(l)
		var sb strings.Builder
		for i, n := range l {
			if len(n) != 1 {
				return netip.Addr{}, false
			}
			if i > 0 && i%4 == 0 {
				sb.WriteByte(':')
			}
			sb.WriteString(n)
		}
		text = sb.String()
	} else {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(text)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a, true
}

// reverseZone names the reverse zone of p, rounded out to a label
// boundary (octets for IPv4, nibbles for IPv6): the reverse name of its
// first address without the labels below the boundary.
func reverseZone(p netip.Prefix) string {
	a := p.Masked().Addr()
	name, _ := mdns.ReverseAddr(a.String())
	labels, bits := 4, 8
	if a.Is6() {
		labels, bits = 32, 4
	}
	for drop := labels - p.Bits()/bits; drop > 0; drop-- {
		name = name[strings.IndexByte(name, '.')+1:]
	}
	return name
}

// forward asks the upstreams in turn; nil means every one failed.
func (s *Server) forward(r *mdns.Msg, client netip.Addr, tcp bool) *mdns.Msg {
	if s.refresh != nil {
		now := time.Now().UnixNano()
		if last := s.refreshedAt.Load(); now-last > int64(time.Second) && s.refreshedAt.CompareAndSwap(last, now) {
			s.refresh()
		}
	}
	ups := *s.ups.Load()
	if len(ups) == 0 {
		return nil
	}
	s.Forwarded.Add(1)
	network := "udp"
	if tcp {
		network = "tcp"
	}
	deadline := time.Now().Add(forwardBudget)
	var last *mdns.Msg
	for _, u := range ups {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		c := mdns.Client{Net: network, Timeout: min(left, forwardTry), UDPSize: ednsSize}
		resp, _, err := c.Exchange(r, u)
		if err != nil {
			s.log.Debug("dns: upstream failed", "upstream", u, "name", r.Question[0].Name, "client", client, "err", err)
			if meter := s.meterOf(); meter != nil {
				meter.UpstreamFailed(u)
			}
			continue
		}
		last = resp
		if resp.Rcode != mdns.RcodeServerFailure && resp.Rcode != mdns.RcodeRefused {
			return resp
		}
	}
	return last
}
