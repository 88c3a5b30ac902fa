package nat

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// The table's parts. Rule comments name each rule; the drift check
// compares them, the chains and the set elements with the desired ones.
const (
	chainPost = "postrouting"
	chainFwd  = "forward"

	setSrc4, setDst4 = "src4", "dst4"
	setSrc6, setDst6 = "src6", "dst6"
	setOverlayIfs    = "overlay_ifs"
	setBridges       = "bridges"
	setDevices       = "wg_devices"
	setOwner         = "owner"
	commentPrefix    = "zlayer-overlayd: "
	// ownerPrefix begins the owner set's comment; the journal's short id
	// follows.
	ownerPrefix = "zlayer-overlayd owner journal="
)

// plan is the table Config asks for, in the form the kernel lists it.
type plan struct {
	sets  []*planSet
	rules map[string][]planRule // chain -> rules in order
}

type planSet struct {
	set   *nftables.Set
	elems []nftables.SetElement
}

type planRule struct {
	comment string
	exprs   []expr.Any
}

func table() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyINet, Name: Table}
}

func ifnameKey(name string) []byte {
	b := make([]byte, 16)
	copy(b, name)
	return b
}

func rangeElems(rs []Range) []nftables.SetElement {
	var out []nftables.SetElement
	for _, r := range rs {
		out = append(out, nftables.SetElement{Key: r.From.AsSlice()})
		if end := r.To.Next(); end.IsValid() {
			out = append(out, nftables.SetElement{Key: end.AsSlice(), IntervalEnd: true})
		}
	}
	return out
}

// newPlan is the table c asks for, marked as owned by journal.
func newPlan(c Config, journal string) *plan {
	t := table()
	p := &plan{rules: map[string][]planRule{}}
	// The owner mark (see the package doc): a set with one element whose
	// comment names the journal.
	p.sets = append(p.sets, &planSet{
		set:   &nftables.Set{Table: t, Name: setOwner, KeyType: nftables.TypeMark, Comment: ownerPrefix + journal},
		elems: []nftables.SetElement{{Key: make([]byte, 4), Comment: ownerPrefix + journal}},
	})
	add := func(name string, typ nftables.SetDatatype, interval bool, elems []nftables.SetElement) *nftables.Set {
		s := &nftables.Set{Table: t, Name: name, KeyType: typ, Interval: interval}
		if typ == nftables.TypeIFName {
			// Interface names are strings, in host order for nft: without
			// this `nft list` shows them empty.
			s.KeyByteOrder = binaryutil.NativeEndian
		}
		p.sets = append(p.sets, &planSet{set: s, elems: elems})
		return s
	}
	var ifs, brs, devs []nftables.SetElement
	for _, b := range c.Bridges {
		brs = append(brs, nftables.SetElement{Key: ifnameKey(b)})
	}
	for _, d := range c.Devices {
		devs = append(devs, nftables.SetElement{Key: ifnameKey(d)})
	}
	ifs = append(append(ifs, brs...), devs...)
	overlayIfs := add(setOverlayIfs, nftables.TypeIFName, false, ifs)
	bridges := add(setBridges, nftables.TypeIFName, false, brs)
	devices := add(setDevices, nftables.TypeIFName, false, devs)

	for _, fam := range []struct {
		v4             bool
		proto          byte
		src, dst       string
		typ            nftables.SetDatatype
		sOff, dOff, ln uint32
		label          string
	}{
		{true, unix.NFPROTO_IPV4, setSrc4, setDst4, nftables.TypeIPAddr, 12, 16, 4, "ipv4"},
		{false, unix.NFPROTO_IPV6, setSrc6, setDst6, nftables.TypeIP6Addr, 8, 24, 16, "ipv6"},
	} {
		srcs := Merge(c.Sources, fam.v4)
		if len(srcs) == 0 {
			continue
		}
		src := add(fam.src, fam.typ, true, rangeElems(srcs))
		dst := add(fam.dst, fam.typ, true, rangeElems(Merge(c.Overlay, fam.v4)))
		p.rules[chainPost] = append(p.rules[chainPost], planRule{
			comment: "masquerade " + fam.label + " leaving the overlay",
			exprs: []expr.Any{
				&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{fam.proto}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: fam.sOff, Len: fam.ln},
				&expr.Lookup{SourceRegister: 1, SetName: src.Name, SetID: 0},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: fam.dOff, Len: fam.ln},
				&expr.Lookup{SourceRegister: 1, SetName: dst.Name, Invert: true},
				&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
				&expr.Lookup{SourceRegister: 1, SetName: overlayIfs.Name, Invert: true},
				&expr.Counter{},
				&expr.Masq{},
			}})
	}
	iif := func(s *nftables.Set, invert bool) []expr.Any {
		return []expr.Any{&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, &expr.Lookup{SourceRegister: 1, SetName: s.Name, Invert: invert}}
	}
	oif := func(s *nftables.Set, invert bool) []expr.Any {
		return []expr.Any{&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1}, &expr.Lookup{SourceRegister: 1, SetName: s.Name, Invert: invert}}
	}
	accept := []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictAccept}}
	cat := func(parts ...[]expr.Any) []expr.Any { return slices.Concat(parts...) }
	established := []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
	}
	p.rules[chainFwd] = []planRule{
		{"service bridges to the mesh", cat(iif(bridges, false), oif(devices, false), accept)},
		{"the mesh to service bridges", cat(iif(devices, false), oif(bridges, false), accept)},
		{"service bridges to the world (masqueraded)", cat(iif(bridges, false), oif(overlayIfs, true), accept)},
		{"replies from the world to service bridges", cat(oif(bridges, false), established, accept)},
	}
	return p
}

func chains(t *nftables.Table) []*nftables.Chain {
	accept := nftables.ChainPolicyAccept
	return []*nftables.Chain{
		{Name: chainPost, Table: t, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept},
		{Name: chainFwd, Table: t, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept},
	}
}

// exists reports whether the daemon's table is in the ruleset.
func exists(c Conn) (bool, error) {
	ts, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("nat: list tables: %w", err)
	}
	for _, t := range ts {
		if t.Name == Table {
			return true, nil
		}
	}
	return false, nil
}

// rebuild replaces the table (had: it exists) with the one cfg asks for,
// marked as journal's, in one batch: the kernel applies all of it or
// nothing, and packets never see a half-built table.
func rebuild(c Conn, cfg Config, journal string, had bool) error {
	t := table()
	if had {
		c.DelTable(t)
	}
	c.AddTable(t)
	p := newPlan(cfg, journal)
	ids := map[string]uint32{}
	for _, s := range p.sets {
		if err := c.AddSet(s.set, s.elems); err != nil {
			return fmt.Errorf("nat: set %s: %w", s.set.Name, err)
		}
		ids[s.set.Name] = s.set.ID
	}
	for _, ch := range chains(t) {
		c.AddChain(ch)
		for _, r := range p.rules[ch.Name] {
			for _, e := range r.exprs {
				if l, ok := e.(*expr.Lookup); ok {
					l.SetID = ids[l.SetName]
				}
			}
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: r.exprs,
				UserData: userdata.AppendString(nil, userdata.TypeComment, commentPrefix+r.comment)})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nat: rebuild table inet %s: %w", Table, err)
	}
	return nil
}

// remove deletes the table, which exists.
func remove(c Conn) error {
	c.DelTable(table())
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nat: delete table inet %s: %w", Table, err)
	}
	return nil
}

// errDrift describes how the kernel's table differs from the plan.
var errDrift = errors.New("drift")

// verify compares the kernel's table, as m read it, with the plan: the
// table, its chains (hook, priority, policy), every rule's comment in
// order, and every set's elements. It returns nil when they match. The
// sets and the owner set's elements are m's; the rest is read here. (The
// owner's journal is readOwner's to judge.)
func verify(c Conn, p *plan, m mark) error {
	if !m.exists {
		return fmt.Errorf("%w: table inet %s is missing", errDrift, Table)
	}
	t := table()
	all, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return fmt.Errorf("nat: list chains: %w", err)
	}
	var got []*nftables.Chain
	for _, ch := range all {
		if ch.Table.Name == Table {
			got = append(got, ch)
		}
	}
	want := chains(t)
	if len(got) != len(want) {
		return fmt.Errorf("%w: %d chains, want %d", errDrift, len(got), len(want))
	}
	for _, w := range want {
		i := slices.IndexFunc(got, func(g *nftables.Chain) bool { return g.Name == w.Name })
		if i < 0 {
			return fmt.Errorf("%w: chain %s is missing", errDrift, w.Name)
		}
		g := got[i]
		if g.Hooknum == nil || *g.Hooknum != *w.Hooknum || g.Priority == nil || *g.Priority != *w.Priority ||
			g.Type != w.Type || g.Policy == nil || *g.Policy != *w.Policy {
			return fmt.Errorf("%w: chain %s changed", errDrift, w.Name)
		}
		rules, err := c.GetRules(t, g)
		if err != nil {
			return fmt.Errorf("nat: list rules of %s: %w", w.Name, err)
		}
		wr := p.rules[w.Name]
		if len(rules) != len(wr) {
			return fmt.Errorf("%w: chain %s has %d rules, want %d", errDrift, w.Name, len(rules), len(wr))
		}
		for j, r := range rules {
			cm, _ := userdata.GetString(r.UserData, userdata.TypeComment)
			if cm != commentPrefix+wr[j].comment || len(r.Exprs) != len(wr[j].exprs) {
				return fmt.Errorf("%w: chain %s rule %d is %q, want %q", errDrift, w.Name, j, cm, commentPrefix+wr[j].comment)
			}
		}
	}
	sets := m.sets
	if len(sets) != len(p.sets) {
		return fmt.Errorf("%w: %d sets, want %d", errDrift, len(sets), len(p.sets))
	}
	for _, ws := range p.sets {
		i := slices.IndexFunc(sets, func(s *nftables.Set) bool { return s.Name == ws.set.Name })
		if i < 0 {
			return fmt.Errorf("%w: set %s is missing", errDrift, ws.set.Name)
		}
		els := m.owner
		if ws.set.Name != setOwner {
			var err error
			if els, err = c.GetSetElements(sets[i]); err != nil {
				return fmt.Errorf("nat: list set %s: %w", ws.set.Name, err)
			}
		}
		if !sameElems(els, ws.elems) {
			return fmt.Errorf("%w: set %s holds %d elements, want %d", errDrift, ws.set.Name, len(els), len(ws.elems))
		}
	}
	return nil
}

func sameElems(got, want []nftables.SetElement) bool {
	key := func(e nftables.SetElement) string {
		k := string(e.Key)
		if e.IntervalEnd {
			k += "/end"
		}
		return k
	}
	var g, w []string
	for _, e := range got {
		// The kernel may list a leading interval end at the zero address.
		if e.IntervalEnd && bytes.Count(e.Key, []byte{0}) == len(e.Key) {
			continue
		}
		g = append(g, key(e))
	}
	for _, e := range want {
		w = append(w, key(e))
	}
	slices.Sort(g)
	slices.Sort(w)
	return slices.Equal(g, w)
}
