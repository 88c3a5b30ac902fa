package projections

import (
	"fmt"
	"net/netip"
	"testing"
)

// bigState holds n reserved addresses, n DNS names and n/10 peers.
func bigState(b testing.TB, n int) *State {
	cfg := DefaultConfig()
	s := New()
	apply := func(c Command) Reply {
		d, err := Decide(s, cfg, c)
		if err != nil {
			b.Fatal(err)
		}
		for _, ev := range d.Events {
			if err := s.Apply(ev); err != nil {
				b.Fatal(err)
			}
		}
		return d.Reply
	}
	apply(SetNodeIdentity{PublicKey: genKey(1)})
	apply(SetupGlobal{Deployment: "b", InstanceID: "1", ClusterCIDR: "10.0.0.0/8", SliceCIDR: "10.64.0.0/12", Port: 51820})
	for i := 0; i < n; i++ {
		apply(AllocateIP{})
		apply(RegisterDNS{Name: fmt.Sprintf("task-%d.svc.bench.local", i), IP: netip.AddrFrom4([4]byte{10, 64, byte(i >> 8), byte(i)})})
		if i%10 == 0 {
			apply(AddPeer{PublicKey: genKey(100000 + i), Endpoint: "192.0.2.1:51820", AllowedIPs: fmt.Sprintf("10.%d.%d.0/24", 128+(i/10)>>8, (i/10)&255), Keepalive: 25})
		}
	}
	return s
}

func BenchmarkSnapshotEncode100k(b *testing.B) {
	s := bigState(b, 100_000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.SetBytes(int64(len(s.EncodeSnapshot())))
	}
}

func BenchmarkSnapshotDecode100k(b *testing.B) {
	buf := bigState(b, 100_000).EncodeSnapshot()
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := DecodeSnapshot(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSnapshotJSON100k(b *testing.B) {
	s := bigState(b, 100_000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		buf, _ := s.CanonicalJSON()
		b.SetBytes(int64(len(buf)))
	}
}
