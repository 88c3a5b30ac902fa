package dns

import (
	"fmt"
	"net/netip"
	"testing"

	mdns "github.com/miekg/dns"

	"github.com/zlayer/overlayd/projections"
)

// BenchmarkAnswerPath is one UDP query's work in the server, without the
// socket: unpack, answer an overlay name, pack.
func BenchmarkAnswerPath(b *testing.B) {
	s := testServer(b)
	for i := 0; i < 1000; i++ {
		s.Set(fmt.Sprintf("svc-%d.bench.local", i), &projections.DNSRecord{V4: netip.AddrFrom4([4]byte{10, 201, byte(i / 256), byte(i % 256)})})
	}
	q := new(mdns.Msg)
	q.SetQuestion("svc-7.bench.local.", mdns.TypeA)
	wire, _ := q.Pack()
	out := make([]byte, 0, 4096)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var r mdns.Msg
		if err := r.Unpack(wire); err != nil {
			b.Fatal(err)
		}
		m, fwd := s.answerLocal(&r, inSlice, false)
		if fwd || len(m.Answer) != 1 {
			b.Fatal("no answer")
		}
		if _, err := m.PackBuffer(out); err != nil {
			b.Fatal(err)
		}
	}
}
