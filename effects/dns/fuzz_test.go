package dns

import (
	"testing"

	mdns "github.com/miekg/dns"
)

// FuzzAnswer: whatever parses as a query, the answer packs, carries the
// query's id, fits the client's UDP size, and gives an outside client
// nothing but REFUSED. (`go test -fuzz FuzzAnswer ./effects/dns`; the
// seeds run with every `go test`.)
func FuzzAnswer(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
		edns  uint16
	}{
		{"web.service.local.", mdns.TypeA, 0}, {"db.lab.local.", mdns.TypeANY, 4096},
		{"2.1.200.10.in-addr.arpa.", mdns.TypePTR, 1232}, {"lab.local.", mdns.TypeSOA, 0},
		{"x.local.", mdns.TypeAAAA, 512}, {"0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", mdns.TypePTR, 0},
	} {
		m := new(mdns.Msg)
		m.SetQuestion(q.name, q.qtype)
		if q.edns != 0 {
			m.SetEdns0(q.edns, false)
		}
		b, _ := m.Pack()
		f.Add(b, true)
		f.Add(b, false)
	}
	s := testServer(f)
	f.Fuzz(func(t *testing.T, wire []byte, inside bool) {
		var r mdns.Msg
		if r.Unpack(wire) != nil || r.Response {
			return
		}
		// No upstreams: nothing leaves the test.
		client := outside
		if inside {
			client = inSlice
		}
		m, fwd := s.answerLocal(&r, client, false)
		if fwd {
			m = s.answerForward(&r, client, false)
		}
		if m == nil {
			t.Fatal("no answer to a query")
		}
		b, err := m.Pack()
		if err != nil {
			t.Fatalf("answer does not pack: %v\n%v", err, m)
		}
		if m.Id != r.Id {
			t.Fatalf("answer id %d, query id %d", m.Id, r.Id)
		}
		if len(b) > udpSize(&r) {
			t.Fatalf("UDP answer of %d bytes for a client taking %d", len(b), udpSize(&r))
		}
		if !inside && (m.Rcode != mdns.RcodeRefused || len(m.Answer)+len(m.Ns) > 0) {
			t.Fatalf("outside client got rcode %d with %d answers", m.Rcode, len(m.Answer))
		}
	})
}
