package nat

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
)

// fakeRuleset is an in-memory nftables ruleset with the batch semantics of
// the kernel: writes queue until Flush, which applies all of them or none.
// Every operation can be made to fail (fail); render prints the ruleset.
type fakeRuleset struct {
	mu     sync.Mutex
	tables []*fTable
	faults map[string]*fault
	// garbled[set] reads of a set still to come list its first element
	// twice and miss its last (see garble).
	garbled map[string]int
	// reads counts the reads of each op, and of each set's elements as
	// "elements <set>".
	reads map[string]int
	// dials counts connections made, closes those closed; flushes counts
	// batches the kernel applied.
	dials, closes, flushes int
	nextID                 uint32
}

type fault struct {
	err  error
	left int // < 0: until cleared
}

type fTable struct {
	t      nftables.Table
	chains []*fChain
	sets   []*fSet
}

type fChain struct {
	c     nftables.Chain
	rules []nftables.Rule
}

type fSet struct {
	s     nftables.Set
	elems []nftables.SetElement
}

func newFakeRuleset() *fakeRuleset {
	return &fakeRuleset{faults: map[string]*fault{}, garbled: map[string]int{}, reads: map[string]int{}}
}

// fail makes the next times calls of op fail (times < 0: until clear).
// Ops: dial, tables, chains, rules, sets, elements, addset, flush.
func (f *fakeRuleset) fail(op string, err error, times int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[op] = &fault{err: err, left: times}
}

// garble makes the next times reads of set's elements list its first
// element twice and miss its last, as a dump of a hashed set the kernel
// is still growing can.
func (f *fakeRuleset) garble(set string, times int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.garbled[set] = times
}

func (f *fakeRuleset) fault(op string) error {
	ft := f.faults[op]
	if ft == nil {
		return nil
	}
	if ft.left > 0 {
		ft.left--
		if ft.left == 0 {
			delete(f.faults, op)
		}
	}
	return ft.err
}

// dial is the reconciler's dial function over this ruleset.
func (f *fakeRuleset) dial() (Conn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fault("dial"); err != nil {
		return nil, fmt.Errorf("nat: nftables connection: %w", err)
	}
	f.dials++
	return &fakeConn{f: f}, nil
}

func (f *fakeRuleset) counts() (dials, closes, flushes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dials, f.closes, f.flushes
}

func (f *fakeRuleset) find(fam nftables.TableFamily, name string) *fTable {
	for _, t := range f.tables {
		if t.t.Family == fam && t.t.Name == name {
			return t
		}
	}
	return nil
}

// edit changes the ruleset by hand (nft from a shell).
func (f *fakeRuleset) edit(fn func(f *fakeRuleset)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// ours is the daemon's table, nil if absent (f.mu held).
func (f *fakeRuleset) ours() *fTable { return f.find(nftables.TableFamilyINet, Table) }

func (f *fakeRuleset) render() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for _, t := range f.tables {
		fmt.Fprintf(&b, "table %d %s\n", t.t.Family, t.t.Name)
		for _, s := range t.sets {
			fmt.Fprintf(&b, "  set %s type %s interval %v comment %q\n", s.s.Name, s.s.KeyType.Name, s.s.Interval, s.s.Comment)
			for _, e := range s.elems {
				fmt.Fprintf(&b, "    elem %x end %v comment %q\n", e.Key, e.IntervalEnd, e.Comment)
			}
		}
		for _, c := range t.chains {
			fmt.Fprintf(&b, "  chain %s type %s\n", c.c.Name, c.c.Type)
			for _, r := range c.rules {
				cm, _ := userdata.GetString(r.UserData, userdata.TypeComment)
				fmt.Fprintf(&b, "    rule %d exprs %q\n", len(r.Exprs), cm)
			}
		}
	}
	return b.String()
}

// fakeConn is one connection: reads see the ruleset, writes queue.
type fakeConn struct {
	f      *fakeRuleset
	batch  []func(*fakeRuleset) error
	closed bool
}

var _ Conn = (*fakeConn)(nil)

var errClosedConn = errors.New("fake: connection closed")

// read runs fn under the lock unless op fails.
func (c *fakeConn) read(op string, fn func()) error {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	if c.closed {
		return errClosedConn
	}
	if err := c.f.fault(op); err != nil {
		return err
	}
	c.f.reads[op]++
	fn()
	return nil
}

// readCounts returns the reads counted since the last call, and restarts
// the count.
func (f *fakeRuleset) readCounts() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.reads
	f.reads = map[string]int{}
	return out
}

func (c *fakeConn) ListTablesOfFamily(fam nftables.TableFamily) (out []*nftables.Table, err error) {
	err = c.read("tables", func() {
		for _, t := range c.f.tables {
			if t.t.Family == fam {
				cp := t.t
				out = append(out, &cp)
			}
		}
	})
	return out, err
}

func (c *fakeConn) ListChainsOfTableFamily(fam nftables.TableFamily) (out []*nftables.Chain, err error) {
	err = c.read("chains", func() {
		for _, t := range c.f.tables {
			if t.t.Family != fam {
				continue
			}
			for _, ch := range t.chains {
				cp := ch.c
				tc := t.t
				cp.Table = &tc
				out = append(out, &cp)
			}
		}
	})
	return out, err
}

func (c *fakeConn) GetRules(t *nftables.Table, ch *nftables.Chain) (out []*nftables.Rule, err error) {
	err = c.read("rules", func() {
		ft := c.f.find(t.Family, t.Name)
		if ft == nil {
			err = syscall.ENOENT
			return
		}
		for _, fc := range ft.chains {
			if fc.c.Name == ch.Name {
				for _, r := range fc.rules {
					cp := r
					cp.Exprs = slices.Clone(r.Exprs)
					out = append(out, &cp)
				}
				return
			}
		}
		err = syscall.ENOENT
	})
	return out, err
}

func (c *fakeConn) GetSets(t *nftables.Table) (out []*nftables.Set, err error) {
	err = c.read("sets", func() {
		ft := c.f.find(t.Family, t.Name)
		if ft == nil {
			err = syscall.ENOENT
			return
		}
		for _, s := range ft.sets {
			cp := s.s
			cp.Comment = "" // the library does not read set comments back
			tc := ft.t
			cp.Table = &tc
			out = append(out, &cp)
		}
	})
	return out, err
}

func (c *fakeConn) GetSetElements(s *nftables.Set) (out []nftables.SetElement, err error) {
	err = c.read("elements", func() {
		ft := c.f.find(s.Table.Family, s.Table.Name)
		if ft == nil {
			err = syscall.ENOENT
			return
		}
		for _, fs := range ft.sets {
			if fs.s.Name == s.Name {
				c.f.reads["elements "+s.Name]++
				out = slices.Clone(fs.elems)
				if n := c.f.garbled[s.Name]; n > 0 && len(out) > 1 {
					c.f.garbled[s.Name] = n - 1
					out[len(out)-1] = out[0]
				}
				return
			}
		}
		err = syscall.ENOENT
	})
	return out, err
}

func (c *fakeConn) queue(fn func(*fakeRuleset) error) { c.batch = append(c.batch, fn) }

func (c *fakeConn) AddTable(t *nftables.Table) *nftables.Table {
	cp := *t
	c.queue(func(f *fakeRuleset) error {
		if f.find(cp.Family, cp.Name) == nil {
			f.tables = append(f.tables, &fTable{t: cp})
		}
		return nil
	})
	return t
}

func (c *fakeConn) DelTable(t *nftables.Table) {
	cp := *t
	c.queue(func(f *fakeRuleset) error {
		ft := f.find(cp.Family, cp.Name)
		if ft == nil {
			return syscall.ENOENT
		}
		f.tables = slices.DeleteFunc(f.tables, func(x *fTable) bool { return x == ft })
		return nil
	})
}

func (c *fakeConn) AddChain(ch *nftables.Chain) *nftables.Chain {
	cp := *ch
	c.queue(func(f *fakeRuleset) error {
		ft := f.find(cp.Table.Family, cp.Table.Name)
		if ft == nil {
			return syscall.ENOENT
		}
		for _, fc := range ft.chains {
			if fc.c.Name == cp.Name {
				return nil
			}
		}
		ft.chains = append(ft.chains, &fChain{c: cp})
		return nil
	})
	return ch
}

func (c *fakeConn) AddRule(r *nftables.Rule) *nftables.Rule {
	cp := *r
	cp.Exprs = slices.Clone(r.Exprs)
	c.queue(func(f *fakeRuleset) error {
		ft := f.find(cp.Table.Family, cp.Table.Name)
		if ft == nil {
			return syscall.ENOENT
		}
		for _, fc := range ft.chains {
			if fc.c.Name == cp.Chain.Name {
				fc.rules = append(fc.rules, cp)
				return nil
			}
		}
		return syscall.ENOENT
	})
	return r
}

func (c *fakeConn) AddSet(s *nftables.Set, vals []nftables.SetElement) error {
	c.f.mu.Lock()
	if err := c.f.fault("addset"); err != nil {
		c.f.mu.Unlock()
		return err
	}
	c.f.nextID++
	s.ID = c.f.nextID
	c.f.mu.Unlock()
	cp := *s
	els := slices.Clone(vals)
	c.queue(func(f *fakeRuleset) error {
		ft := f.find(cp.Table.Family, cp.Table.Name)
		if ft == nil {
			return syscall.ENOENT
		}
		for _, fs := range ft.sets {
			if fs.s.Name == cp.Name {
				return syscall.EEXIST
			}
		}
		ft.sets = append(ft.sets, &fSet{s: cp, elems: els})
		return nil
	})
	return nil
}

// Flush applies the batch to a copy of the ruleset and keeps the copy only
// when every message succeeded.
func (c *fakeConn) Flush() error {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	batch := c.batch
	c.batch = nil
	if c.closed {
		return errClosedConn
	}
	if err := c.f.fault("flush"); err != nil {
		return err
	}
	saved := c.f.tables
	c.f.tables = cloneTables(saved)
	for _, op := range batch {
		if err := op(c.f); err != nil {
			c.f.tables = saved
			return err
		}
	}
	c.f.flushes++
	return nil
}

func cloneTables(ts []*fTable) []*fTable {
	var out []*fTable
	for _, t := range ts {
		nt := &fTable{t: t.t}
		for _, ch := range t.chains {
			nt.chains = append(nt.chains, &fChain{c: ch.c, rules: slices.Clone(ch.rules)})
		}
		for _, s := range t.sets {
			nt.sets = append(nt.sets, &fSet{s: s.s, elems: slices.Clone(s.elems)})
		}
		out = append(out, nt)
	}
	return out
}

func (c *fakeConn) CloseLasting() error {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	if !c.closed {
		c.closed = true
		c.f.closes++
	}
	return nil
}
