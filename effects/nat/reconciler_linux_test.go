package nat

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/nftables"

	"github.com/zlayer/overlayd/effects"
	"github.com/zlayer/overlayd/projections"
)

// The reconciler driven through fakeRuleset: no root, no kernel.

type fakeNode struct {
	f      *fakeRuleset
	forgot [][]Range
}

func (n *fakeNode) reconciler(owner effects.Owner) *Reconciler {
	return newReconciler(quiet(), owner, n.f.dial, func(rs []Range) (uint, error) {
		n.forgot = append(n.forgot, rs)
		return uint(len(rs)), nil
	})
}

func newFakeNode() *fakeNode { return &fakeNode{f: newFakeRuleset()} }

// emptyView is a state without a global overlay (NAT off).
type emptyView struct{}

func (emptyView) Read(fn func(st *projections.State)) { fn(projections.New()) }

func mustApply(t *testing.T, r *Reconciler, cfg Config, check bool) {
	t.Helper()
	if err := r.Apply(cfg, check); err != nil {
		t.Fatal(err)
	}
}

// A table built once, then left alone while it matches; a restarted
// reconciler adopts it without a rebuild; it carries the owner mark.
func TestFakeBuildAdoptIdle(t *testing.T) {
	n := newFakeNode()
	r := n.reconciler(testOwner)
	cfg := testConfig(3)
	for i := 0; i < 10; i++ {
		mustApply(t, r, cfg, true)
	}
	if _, _, flushes := n.f.counts(); flushes != 1 {
		t.Fatalf("%d batches for one state, want 1", flushes)
	}
	out := n.f.render()
	if !strings.Contains(out, `set owner type mark interval false comment "zlayer-overlayd owner journal=0123456789ab"`) ||
		!strings.Contains(out, `elem 00000000 end false comment "zlayer-overlayd owner journal=0123456789ab"`) {
		t.Fatalf("no owner mark:\n%s", out)
	}
	r2 := n.reconciler(testOwner)
	mustApply(t, r2, cfg, true)
	if s := r2.Stats(); s.Rebuilds != 0 {
		t.Fatalf("a restarted reconciler rebuilt an intact table: %+v", s)
	}
	if n.f.render() != out {
		t.Fatal("adopting changed the table")
	}
}

// Drift: the table deleted (flush ruleset), a rule deleted, a set element
// deleted, the owner element deleted: each check rebuilds the same table.
func TestFakeDriftRebuilt(t *testing.T) {
	n := newFakeNode()
	r := n.reconciler(testOwner)
	cfg := testConfig(3)
	mustApply(t, r, cfg, true)
	want := n.f.render()
	edits := []struct {
		name string
		fn   func(f *fakeRuleset)
	}{
		{"flush ruleset", func(f *fakeRuleset) { f.tables = nil }},
		{"delete a rule", func(f *fakeRuleset) { c := f.ours().chains[1]; c.rules = c.rules[1:] }},
		{"delete an element", func(f *fakeRuleset) {
			for _, s := range f.ours().sets {
				if s.s.Name == setBridges {
					s.elems = s.elems[1:]
				}
			}
		}},
		{"delete a chain", func(f *fakeRuleset) { f.ours().chains = f.ours().chains[:1] }},
	}
	for i, e := range edits {
		n.f.edit(e.fn)
		if n.f.render() == want {
			t.Fatalf("%s: the edit did nothing", e.name)
		}
		mustApply(t, r, cfg, true)
		if got := n.f.render(); got != want {
			t.Fatalf("%s: rebuilt table differs:\n%s\nwant\n%s", e.name, got, want)
		}
		if s := r.Stats(); s.Repairs != i+1 {
			t.Fatalf("%s: %d repairs, want %d", e.name, s.Repairs, i+1)
		}
	}
	// Without check, a pass over an unchanged state reads nothing.
	n.f.edit(func(f *fakeRuleset) { f.tables = nil })
	mustApply(t, r, cfg, false)
	if n.f.render() != "" {
		t.Fatal("a change pass without a change touched the kernel")
	}
}

// The check of an intact table reads each part of it once: the tables,
// the chains, each chain's rules, the sets, each set's elements (the
// owner mark among them).
func TestFakeCheckReadsOnce(t *testing.T) {
	n := newFakeNode()
	r := n.reconciler(testOwner)
	cfg := testConfig(3)
	mustApply(t, r, cfg, true)
	p := newPlan(cfg, testOwner.Journal)
	want := map[string]int{"tables": 1, "chains": 1, "rules": len(chains(table())), "sets": 1, "elements": len(p.sets)}
	for _, s := range p.sets {
		want["elements "+s.set.Name] = 1
	}
	for _, check := range []func(){
		func() { mustApply(t, r, cfg, true) },                       // the periodic check
		func() { mustApply(t, n.reconciler(testOwner), cfg, true) }, // adoption after a restart
	} {
		n.f.readCounts()
		check()
		if got := n.f.readCounts(); !maps.Equal(got, want) {
			t.Fatalf("reads %v, want %v", got, want)
		}
	}
}

// A dump that lists an element twice and misses another (the kernel
// growing a hashed set) is read again, up to twice, before it counts as
// drift: one or two such reads keep the table (and adopt it after a
// restart); three in a row rebuild it.
func TestFakeInconsistentDumpReadAgain(t *testing.T) {
	n := newFakeNode()
	r := n.reconciler(testOwner)
	cfg := testConfig(3)
	mustApply(t, r, cfg, true)
	want := n.f.render()
	for _, times := range []int{1, 2} {
		n.f.garble(setBridges, times)
		mustApply(t, r, cfg, true)
		if s := r.Stats(); s.Repairs != 0 || s.Rebuilds != 1 {
			t.Fatalf("%d inconsistent reads: %+v", times, s)
		}
	}
	r2 := n.reconciler(testOwner)
	n.f.garble(setBridges, 1)
	mustApply(t, r2, cfg, true)
	if s := r2.Stats(); s.Rebuilds != 0 {
		t.Fatalf("a restarted reconciler rebuilt an intact table after one inconsistent read: %+v", s)
	}
	n.f.garble(setBridges, 3)
	mustApply(t, r, cfg, true)
	if s := r.Stats(); s.Repairs != 1 || s.Rebuilds != 2 {
		t.Fatalf("three inconsistent reads in a row: %+v", s)
	}
	if _, _, flushes := n.f.counts(); flushes != 2 || n.f.render() != want {
		t.Fatalf("%d batches, want 2:\n%s", flushes, n.f.render())
	}
}

// A batch the kernel refuses: nothing of it applies, the error is under
// "global" and names the table, the connection is dropped, and the next
// pass dials again and rebuilds.
func TestFakeBatchFailureDropsConnection(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.ENOBUFS, syscall.EMFILE} {
		t.Run(errno.Error(), func(t *testing.T) {
			n := newFakeNode()
			r := n.reconciler(testOwner)
			mustApply(t, r, testConfig(3), true)
			before := n.f.render()
			n.f.fail("flush", errno, 1)
			err := r.Apply(testConfig(4), false)
			if !errors.Is(err, errno) || !strings.Contains(err.Error(), "table inet "+Table) {
				t.Fatalf("%v", err)
			}
			if n.f.render() != before {
				t.Fatal("a refused batch changed the ruleset")
			}
			if dials, closes, _ := n.f.counts(); dials != 1 || closes != 1 {
				t.Fatalf("dials %d closes %d, want the connection dropped", dials, closes)
			}
			mustApply(t, r, testConfig(4), false)
			if dials, _, _ := n.f.counts(); dials != 2 || !strings.Contains(n.f.render(), "7a6c2d73332d6200") { // "zl-s3-b"
				t.Fatalf("dials %d; the retry did not rebuild:\n%s", dials, n.f.render())
			}
		})
	}
}

// Reconcile keys every error under "global".
func TestFakeReconcileKeysErrorsGlobal(t *testing.T) {
	n := newFakeNode()
	r := n.reconciler(testOwner)
	n.f.fail("dial", syscall.EMFILE, 1)
	err := r.Reconcile(context.Background(), emptyView{}, []string{"global"}, true)
	var ke effects.KeyErrors
	if !errors.As(err, &ke) || len(ke) != 1 || !errors.Is(ke["global"], syscall.EMFILE) {
		t.Fatalf("%v", err)
	}
	if err := r.Reconcile(context.Background(), emptyView{}, []string{"global"}, true); err != nil {
		t.Fatal(err)
	}
}

// Errors reading the ruleset (EMFILE, ENOBUFS) drop the connection and
// change nothing; the next pass finds the table intact and keeps it.
func TestFakeListErrorsRetried(t *testing.T) {
	for _, op := range []string{"tables", "chains", "rules", "sets", "elements"} {
		t.Run(op, func(t *testing.T) {
			n := newFakeNode()
			r := n.reconciler(testOwner)
			mustApply(t, r, testConfig(2), true)
			want := n.f.render()
			n.f.fail(op, syscall.ENOBUFS, 1)
			if err := r.Apply(testConfig(2), true); !errors.Is(err, syscall.ENOBUFS) {
				t.Fatalf("%v", err)
			}
			mustApply(t, r, testConfig(2), true)
			if _, closes, flushes := n.f.counts(); closes != 1 || flushes != 1 || n.f.render() != want {
				t.Fatalf("closes %d flushes %d:\n%s", closes, flushes, n.f.render())
			}
		})
	}
}

// A table of our name made by another journal is neither adopted, rebuilt
// nor deleted; the error names its owner. An unmarked one counts as our
// own only for a legacy journal, which then marks it.
func TestFakeOwnerMark(t *testing.T) {
	n := newFakeNode()
	other := effects.Owner{Journal: "fedcba987654"}
	mustApply(t, n.reconciler(other), testConfig(2), true)
	theirs := n.f.render()
	r := n.reconciler(testOwner)
	for _, cfg := range []Config{testConfig(3), {}} {
		for _, check := range []bool{false, true} {
			err := r.Apply(cfg, check)
			if !errors.Is(err, ErrNotOwner) || !strings.Contains(err.Error(), "owned by journal fedcba987654") ||
				!strings.Contains(err.Error(), "0123456789ab") {
				t.Fatalf("enabled %v check %v: %v", cfg.Enabled, check, err)
			}
			if n.f.render() != theirs {
				t.Fatalf("another journal's table changed:\n%s", n.f.render())
			}
		}
	}
	if len(n.forgot) != 0 {
		t.Fatal("forgot another journal's flows")
	}

	// Unmarked (made before marks, or by hand).
	n.f.edit(func(f *fakeRuleset) {
		f.ours().sets = slices.DeleteFunc(f.ours().sets, func(s *fSet) bool { return s.s.Name == setOwner })
	})
	unmarked := n.f.render()
	err := r.Apply(testConfig(2), true)
	if !errors.Is(err, ErrNotOwner) || !strings.Contains(err.Error(), "carries no owner mark") || n.f.render() != unmarked {
		t.Fatalf("non-legacy journal and an unmarked table: %v\n%s", err, n.f.render())
	}
	legacy := n.reconciler(effects.Owner{Journal: "0123456789ab", Legacy: true})
	mustApply(t, legacy, testConfig(2), true)
	if out := n.f.render(); !strings.Contains(out, "owner journal=0123456789ab") || strings.Contains(out, "fedcba987654") {
		t.Fatalf("the legacy journal did not mark the table as its own:\n%s", out)
	}
	// Now it is ours: the non-legacy reconciler of the same journal
	// manages and removes it.
	mustApply(t, r, Config{}, true)
	if n.f.render() != "" || len(n.forgot) != 1 {
		t.Fatalf("not removed (forgot %v):\n%s", n.forgot, n.f.render())
	}
}

// Turning NAT off removes the table and forgets the flows its source sets
// masqueraded; other tables stay.
func TestFakeDisableRemovesOnlyOurs(t *testing.T) {
	n := newFakeNode()
	n.f.edit(func(f *fakeRuleset) {
		f.tables = append(f.tables, &fTable{t: nftables.Table{Family: nftables.TableFamilyIPv4, Name: "theirs"}})
	})
	r := n.reconciler(testOwner)
	mustApply(t, r, testConfig(1), true)
	mustApply(t, r, Config{}, false)
	if out := n.f.render(); out != "table 2 theirs\n" {
		t.Fatalf("after NAT off:\n%s", out)
	}
	want := Merge(testConfig(1).Sources, true)
	if len(n.forgot) != 1 || len(n.forgot[0]) != len(want) || n.forgot[0][0] != want[0] {
		t.Fatalf("forgot %v, want %v", n.forgot, want)
	}
	mustApply(t, r, Config{}, true) // again: a no-op
	if _, _, flushes := n.f.counts(); flushes != 2 {
		t.Fatalf("%d batches, want 2", flushes)
	}
}
