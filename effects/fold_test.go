package effects

import (
	"testing"
	"time"
)

// A key's first line passes, repeats within Every are counted and passed
// on with the next line after it; distinct keys past Max forget the one
// written longest ago instead of growing.
func TestFolder(t *testing.T) {
	f := Folder[int]{Every: time.Minute, Max: 2}
	t0 := time.Unix(1000, 0)
	if ok, n := f.Allow(1, t0); !ok || n != 0 {
		t.Fatalf("first line: %v %d", ok, n)
	}
	for i := 1; i <= 5; i++ {
		if ok, _ := f.Allow(1, t0.Add(time.Duration(i)*time.Second)); ok {
			t.Fatalf("repeat %d within Every passed", i)
		}
	}
	if ok, n := f.Allow(1, t0.Add(time.Minute)); !ok || n != 5 {
		t.Fatalf("after Every: %v, %d left out (want 5)", ok, n)
	}
	f.Allow(2, t0.Add(2*time.Minute))
	f.Allow(3, t0.Add(3*time.Minute)) // past Max: key 1, written longest ago, goes
	if len(f.m) != 2 || f.m[1] != nil {
		t.Fatalf("tracked %d keys (key 1 kept: %v), want 2 without key 1", len(f.m), f.m[1] != nil)
	}
}
