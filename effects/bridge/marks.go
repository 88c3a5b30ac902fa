package bridge

import (
	"fmt"
	"strings"

	"github.com/zlayer/overlayd/effects"
)

// The ownership marks (link aliases) are specified in doc.go.

const (
	markPrefix = "zlayer-overlayd "
	// aliasMax is the longest alias the kernel keeps (IFALIASZ is 256,
	// with the terminating zero).
	aliasMax = 255
	// fieldMax bounds the owner's fields in a mark, so that every mark
	// fits in aliasMax (a service name is at most 63 bytes).
	fieldMax = 64
)

// Kinds of marks.
const (
	kindBridge = "bridge" // a service bridge
	kindAttach = "attach" // the host end of a container's veth
	kindCtr    = "ctr"    // the container's end (eth0, eth1)
)

// mark is a parsed ownership mark.
type mark struct {
	kind    string
	id      string // bridge: the service; attach and ctr: the attachment's ID
	leg     Leg    // attach and ctr
	journal string // "": a mark written before journals had ids
	home    string // ctr only
}

// parseMark reads an alias; ok is false when it is not a mark of this
// daemon (empty, another program's alias, or a shape it does not know).
func parseMark(alias string) (m mark, ok bool) {
	rest, found := strings.CutPrefix(alias, markPrefix)
	if !found {
		return mark{}, false
	}
	f := strings.Fields(rest)
	if len(f) == 0 {
		return mark{}, false
	}
	m.kind = f[0]
	var pos []string
	for _, w := range f[1:] {
		switch {
		case strings.HasPrefix(w, "j="):
			m.journal = w[2:]
		case strings.HasPrefix(w, "h="):
			m.home = w[2:]
		case strings.Contains(w, "="):
			// A field of a newer format: ignored, so that the mark
			// still names its owner.
		default:
			pos = append(pos, w)
		}
	}
	switch {
	case m.kind == kindBridge && len(pos) == 1:
		m.id = pos[0]
	case (m.kind == kindAttach || m.kind == kindCtr) && len(pos) == 2 && (pos[1] == string(LegService) || pos[1] == string(LegGlobal)):
		m.id, m.leg = pos[0], Leg(pos[1])
	default:
		return mark{}, false
	}
	if m.kind == kindCtr && m.journal == "" {
		return mark{}, false // container ends were never marked without an owner
	}
	return m, true
}

// owner describes whose a mark is, for messages.
func (m mark) owner() string {
	switch {
	case m.journal == "":
		return "a daemon from before journal ids (no owner in the mark)"
	case m.home != "":
		return fmt.Sprintf("journal %s at home %s", m.journal, m.home)
	}
	return "journal " + m.journal
}

// marks writes and judges the marks of one owner.
type marks struct {
	journal string
	home    string
	// legacy: marks without an owner are this owner's too.
	legacy bool
}

// newMarks sanitises the owner's fields: no spaces or control characters
// (they would split the mark), at most fieldMax bytes. A zero Owner (no
// journal id) writes the marks of before journal ids and owns them.
func newMarks(o effects.Owner) marks {
	clean := func(s string) string {
		s = strings.Map(func(r rune) rune {
			if r <= ' ' || r == 0x7f || r == '=' {
				return '_'
			}
			return r
		}, s)
		if len(s) > fieldMax {
			s = s[:fieldMax]
		}
		return s
	}
	m := marks{journal: clean(o.Journal), home: clean(o.Home), legacy: o.Legacy || o.Journal == ""}
	return m
}

func (o marks) suffix(withHome bool) string {
	if o.journal == "" {
		return ""
	}
	s := " j=" + o.journal
	if withHome && o.home != "" {
		s += " h=" + o.home
	}
	return s
}

// bridge is the mark of a service's bridge.
func (o marks) bridge(service string) string {
	return markPrefix + kindBridge + " " + service + o.suffix(false)
}

// host is the mark of the host end of an attachment's leg.
func (o marks) host(a *Attachment, leg Leg) string {
	return markPrefix + kindAttach + " " + a.ID() + " " + string(leg) + o.suffix(false)
}

// ctr is the mark of the container's end of a leg. Without a journal id
// the container ends are left unmarked (the format before ids).
func (o marks) ctr(a *Attachment, leg Leg) string {
	if o.journal == "" {
		return ""
	}
	return markPrefix + kindCtr + " " + a.ID() + " " + string(leg) + o.suffix(true)
}

// owns reports whether m is this owner's: the same journal (and, on a
// container's end, the same home); a mark without an owner when legacy.
func (o marks) owns(m mark) bool {
	if m.journal == "" {
		return o.legacy && m.kind != kindCtr
	}
	if m.journal != o.journal {
		return false
	}
	return m.kind != kindCtr || m.home == o.home
}

// verdict sorts a link's alias for a link this owner needs.
type verdict int

const (
	unmarked verdict = iota // no alias at all
	own                     // a mark of this owner
	foreign                 // another owner's mark
	alien                   // an alias that is no mark of this daemon
)

func (o marks) judge(alias string) (verdict, mark) {
	if alias == "" {
		return unmarked, mark{}
	}
	m, ok := parseMark(alias)
	switch {
	case !ok:
		return alien, mark{}
	case o.owns(m):
		return own, m
	}
	return foreign, m
}
