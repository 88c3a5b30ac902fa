package projections

import (
	"encoding/base64"
	"math"
	"math/rand"
	"net/netip"
	"testing"

	"github.com/zlayer/overlayd/tools/testseed"
)

// birthday is the probability that n nodes choosing uniformly among s
// slots do not all choose distinct slots.
func birthday(n, s int) float64 {
	q := 1.0
	for i := 0; i < n; i++ {
		q *= 1 - float64(i)/float64(s)
	}
	return 1 - q
}

// The odds documented in docs/semantics.md: derived slices behave like a
// uniform choice, so n nodes collide with the birthday probability.
func TestDerivedSliceCollisionOdds(t *testing.T) {
	cluster := netip.MustParsePrefix("10.200.0.0/16")
	r := rand.New(rand.NewSource(testseed.New(t)))
	const trials = 4000
	for _, n := range []int{5, 10, 20} {
		collisions := 0
		for i := 0; i < trials; i++ {
			seen := map[netip.Prefix]bool{}
			hit := false
			for j := 0; j < n; j++ {
				var b [32]byte
				r.Read(b[:])
				p, ok := probeSlot(cluster, 24, SliceHash(base64.StdEncoding.EncodeToString(b[:])), func(netip.Prefix) bool { return true })
				if !ok {
					t.Fatalf("no /24 slot in an empty %s", cluster)
				}
				hit = hit || seen[p]
				seen[p] = true
			}
			if hit {
				collisions++
			}
		}
		got, want := float64(collisions)/trials, birthday(n, 256)
		// 5 standard deviations of a binomial proportion.
		tol := 5 * math.Sqrt(want*(1-want)/trials)
		if math.Abs(got-want) > tol {
			t.Errorf("%d nodes: %.3f of trials collided, uniform hashing predicts %.3f (±%.3f)", n, got, want, tol)
		}
		t.Logf("%d nodes in a /16 with /24 slices: %.1f%% collide (formula %.1f%%)", n, 100*got, 100*want)
	}
}
