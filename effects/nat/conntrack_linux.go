package nat

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// masqueradedSources reads the source ranges the kernel's table
// masquerades (its src4 and src6 sets), so that the flows it translated
// can be found after it is gone, whatever the state now says.
func masqueradedSources(c Conn) ([]Range, error) {
	t := table()
	sets, err := c.GetSets(t)
	if err != nil {
		return nil, fmt.Errorf("nat: list sets: %w", err)
	}
	var out []Range
	for _, s := range sets {
		if s.Name != setSrc4 && s.Name != setSrc6 {
			continue
		}
		els, err := c.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("nat: list set %s: %w", s.Name, err)
		}
		out = append(out, intervals(els)...)
	}
	return out, nil
}

// intervals turns an interval set's elements (a start, then an end one
// past the range flagged IntervalEnd) back into ranges.
func intervals(els []nftables.SetElement) []Range {
	slices.SortFunc(els, func(a, b nftables.SetElement) int {
		if c := bytes.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		// At one key an end sorts before a start.
		switch {
		case a.IntervalEnd && !b.IntervalEnd:
			return -1
		case !a.IntervalEnd && b.IntervalEnd:
			return 1
		}
		return 0
	})
	var out []Range
	var start netip.Addr
	for _, e := range els {
		a, ok := netip.AddrFromSlice(e.Key)
		if !ok {
			continue
		}
		if !e.IntervalEnd {
			start = a
			continue
		}
		if start.IsValid() {
			out = append(out, Range{start, a.Prev()})
			start = netip.Addr{}
		}
	}
	if start.IsValid() { // open to the family's last address
		last := netip.AddrFrom4([4]byte{255, 255, 255, 255})
		if start.Is6() {
			last = netip.AddrFrom16([16]byte{0: 0xff, 1: 0xff, 2: 0xff, 3: 0xff, 4: 0xff, 5: 0xff, 6: 0xff, 7: 0xff,
				8: 0xff, 9: 0xff, 10: 0xff, 11: 0xff, 12: 0xff, 13: 0xff, 14: 0xff, 15: 0xff})
		}
		out = append(out, Range{start, last})
	}
	return out
}

// translated matches conntrack flows that began in one of the ranges and
// whose source was rewritten (their reply goes to another address): the
// flows the table masqueraded.
type translated []Range

func (t translated) MatchConntrackFlow(f *netlink.ConntrackFlow) bool {
	src, ok := netip.AddrFromSlice(f.Forward.SrcIP)
	if !ok {
		return false
	}
	src = src.Unmap()
	replyTo, ok := netip.AddrFromSlice(f.Reverse.DstIP)
	if !ok || replyTo.Unmap() == src {
		return false
	}
	for _, r := range t {
		if r.From.Compare(src) <= 0 && src.Compare(r.To) <= 0 {
			return true
		}
	}
	return false
}

// forgetTranslations deletes the conntrack entries of flows the table
// masqueraded: without it they keep their translation after NAT is turned
// off, until they time out. It returns how many went.
func forgetTranslations(nsFd int, rs []Range) (uint, error) {
	if len(rs) == 0 {
		return 0, nil
	}
	var h *netlink.Handle
	var err error
	if nsFd >= 0 {
		h, err = netlink.NewHandleAt(netns.NsHandle(nsFd), unix.NETLINK_NETFILTER)
	} else {
		h, err = netlink.NewHandle(unix.NETLINK_NETFILTER)
	}
	if err != nil {
		return 0, fmt.Errorf("nat: conntrack: %w", err)
	}
	defer h.Close()
	var n uint
	for _, fam := range []netlink.InetFamily{unix.AF_INET, unix.AF_INET6} {
		k, err := h.ConntrackDeleteFilters(netlink.ConntrackTable, fam, translated(rs))
		n += k
		if err != nil {
			return n, fmt.Errorf("nat: conntrack: %w", err)
		}
	}
	return n, nil
}
