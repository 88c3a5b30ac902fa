package dns

import (
	"strings"
	"testing"

	mdns "github.com/miekg/dns"
)

// FuzzAnswer: whatever parses as a query, from any client, over UDP or
// TCP, the answer packs and unpacks, carries the query's id and echoes its
// one question, fits the client's UDP size, and gives an outside client
// nothing but REFUSED. An answer the server gives itself (nothing is
// forwarded: the test server has no upstreams) only ever carries records
// for the question's own name, and an address only for a registered name
// (inside an overlay zone or registered as it is); a name that is not the
// server's goes upstream, and with no upstream gets SERVFAIL and nothing
// else. (`go test -fuzz FuzzAnswer ./effects/dns`; the seeds in
// testdata/fuzz/FuzzAnswer run with every `go test`.)
func FuzzAnswer(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
		edns  uint16
	}{
		{"web.service.local.", mdns.TypeA, 0}, {"db.lab.local.", mdns.TypeANY, 4096},
		{"2.1.200.10.in-addr.arpa.", mdns.TypePTR, 1232}, {"lab.local.", mdns.TypeSOA, 0},
		{"x.local.", mdns.TypeAAAA, 512}, {"0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", mdns.TypePTR, 0},
		{"API.example.org.", mdns.TypeA, 0}, {"example.org.", mdns.TypeA, 0}, {"db.", mdns.TypeAAAA, 0},
	} {
		m := new(mdns.Msg)
		m.SetQuestion(q.name, q.qtype)
		if q.edns != 0 {
			m.SetEdns0(q.edns, false)
		}
		b, _ := m.Pack()
		f.Add(b, true, false)
		f.Add(b, false, false)
		f.Add(b, true, true)
	}
	s := testServer(f)
	f.Fuzz(func(t *testing.T, wire []byte, inside, tcp bool) {
		var r mdns.Msg
		if r.Unpack(wire) != nil || r.Response {
			return
		}
		client := outside
		if inside {
			client = inSlice
		}
		m, fwd := s.answerLocal(&r, client, tcp)
		if fwd {
			if m != nil {
				t.Fatal("an answer and a forward at once")
			}
			m = s.answerForward(&r, client, tcp)
		}
		if m == nil {
			t.Fatal("no answer to a query")
		}
		b, err := m.Pack()
		if err != nil {
			t.Fatalf("answer does not pack: %v\n%v", err, m)
		}
		var back mdns.Msg
		if err := back.Unpack(b); err != nil {
			t.Fatalf("packed answer does not unpack: %v\n%v", err, m)
		}
		if m.Id != r.Id || !m.Response {
			t.Fatalf("answer id %d (response %v), query id %d", m.Id, m.Response, r.Id)
		}
		if len(r.Question) == 1 && (len(m.Question) != 1 || m.Question[0] != r.Question[0]) {
			t.Fatalf("question %v not echoed: %v", r.Question, m.Question)
		}
		if !tcp && len(b) > udpSize(&r) {
			t.Fatalf("UDP answer of %d bytes for a client taking %d", len(b), udpSize(&r))
		}
		if !inside && (m.Rcode != mdns.RcodeRefused || len(m.Answer)+len(m.Ns) > 0) {
			t.Fatalf("outside client got rcode %d with %d answers", m.Rcode, len(m.Answer))
		}
		if fwd {
			if m.Rcode != mdns.RcodeServerFailure || len(m.Answer)+len(m.Ns) > 0 {
				t.Fatalf("forwarded with no upstream: rcode %s, %d answers", mdns.RcodeToString[m.Rcode], len(m.Answer))
			}
			return
		}
		for _, rr := range m.Answer {
			// Names compare without case (RFC 4343): an SOA at the
			// zone's apex is answered under the zone's own spelling.
			if len(r.Question) != 1 || !strings.EqualFold(rr.Header().Name, r.Question[0].Name) {
				t.Fatalf("answer for %q to the question %v", rr.Header().Name, r.Question)
			}
			switch rr.(type) {
			case *mdns.A, *mdns.AAAA:
				if !s.registered(rr.Header().Name) {
					t.Fatalf("an address for %q, a name that is not registered", rr.Header().Name)
				}
			case *mdns.PTR:
				if _, ok := reverseAddr(strings.ToLower(rr.Header().Name)); !ok {
					t.Fatalf("a PTR for %q, not a reverse name", rr.Header().Name)
				}
			case *mdns.SOA:
				if !s.ownZone(rr.Header().Name) {
					t.Fatalf("an SOA answer for %q, not a zone of the server", rr.Header().Name)
				}
			default:
				t.Fatalf("unexpected answer record %v", rr)
			}
		}
	})
}

// registered reports whether the owner name fq (as asked) is a name the
// server holds: registered as it is, or relative to an overlay zone.
func (s *Server) registered(fq string) bool {
	lq := strings.ToLower(fq)
	if !strings.HasSuffix(lq, ".") {
		lq += "."
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if _, ok := s.names[lq[:len(lq)-1]]; ok {
		return true
	}
	for _, z := range s.cfg.Load().Zones {
		if rel, ok := strings.CutSuffix(lq, "."+z); ok {
			if _, ok := s.names[rel]; ok {
				return true
			}
		}
	}
	return false
}

// ownZone reports whether fq is one of the server's overlay zones.
func (s *Server) ownZone(fq string) bool {
	lq := strings.ToLower(fq)
	for _, z := range s.cfg.Load().Zones {
		if lq == z {
			return true
		}
	}
	return false
}
