package projections

import (
	"math/rand"
	"testing"

	"github.com/zlayer/overlayd/tools/testseed"
)

// Corrupt snapshots are refused, never half-loaded, and never panic.
func TestDecodeSnapshotRejectsCorruption(t *testing.T) {
	cfg := DefaultConfig()
	g := &gen{r: rand.New(rand.NewSource(testseed.New(t)))}
	s := New()
	d, err := Decide(s, cfg, SetNodeIdentity{PublicKey: genKey(9)})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range d.Events {
		if err := s.Apply(ev); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 400; i++ {
		if d, err := Decide(s, cfg, g.command(s)); err == nil {
			for _, ev := range d.Events {
				if err := s.Apply(ev); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	b := s.EncodeSnapshot()
	if _, err := DecodeSnapshot(b); err != nil {
		t.Fatal(err)
	}
	for cut := 0; cut < len(b); cut += 1 + len(b)/200 {
		if _, err := DecodeSnapshot(b[:cut]); err == nil {
			t.Fatalf("truncated snapshot (%d of %d bytes) accepted", cut, len(b))
		}
	}
	if _, err := DecodeSnapshot(append(append([]byte(nil), b...), 0)); err == nil {
		t.Fatal("trailing byte accepted")
	}
}
