package nat

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/zlayer/overlayd/tools/testseed"
)

// Merge's ranges are sorted, disjoint and not adjacent, and hold exactly
// the addresses of the prefixes (checked on random prefixes and probes).
func TestMergeProperty(t *testing.T) {
	seed := testseed.New(t)
	rng := rand.New(rand.NewPCG(uint64(seed), 2))
	for round := 0; round < 300; round++ {
		var ps []netip.Prefix
		for i := 0; i < 1+rng.IntN(20); i++ {
			a := netip.AddrFrom4([4]byte{10, byte(rng.IntN(4)), byte(rng.IntN(256)), byte(rng.IntN(256))})
			ps = append(ps, netip.PrefixFrom(a, 14+rng.IntN(19)).Masked())
		}
		rs := Merge(ps, true)
		for i := 1; i < len(rs); i++ {
			if rs[i-1].To.Next().Compare(rs[i].From) >= 0 {
				t.Fatalf("round %d: ranges %v and %v overlap or touch", round, rs[i-1], rs[i])
			}
		}
		for i := 0; i < 200; i++ {
			probe := netip.AddrFrom4([4]byte{10, byte(rng.IntN(4)), byte(rng.IntN(256)), byte(rng.IntN(256))})
			inP := false
			for _, p := range ps {
				inP = inP || p.Contains(probe)
			}
			inR := false
			for _, r := range rs {
				inR = inR || (r.From.Compare(probe) <= 0 && probe.Compare(r.To) <= 0)
			}
			if inP != inR {
				t.Fatalf("round %d: %s in prefixes %v, in ranges %v (%v / %v)", round, probe, inP, inR, ps, rs)
			}
		}
	}
}
