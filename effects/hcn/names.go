package hcn

import (
	"strings"

	"github.com/zlayer/overlayd/effects"
	"github.com/zlayer/overlayd/projections"
)

// Names and ownership marks (doc.go, "Names and marks"). HCN networks and
// endpoints have a free-form Name and no other free-form field on every
// version of the schema, so the Name is the mark: a fixed prefix, what
// the object is, then "." and the owner's journal. Namespaces have no name
// at all: their GUID, decided and journaled with the attach, ties them to
// the state, and the names of their endpoints carry it (an endpoint is
// always made before its namespace and deleted after it).

const (
	namePrefix   = "zlayer-"
	overlayBase  = "zlayer-overlay"
	servicePfx   = "zlayer-svc-"
	endpointPfx  = "zlayer-ep-"
	noJournal    = "nojournal"
	journalMax   = 64
	legService   = "s"
	legGlobal    = "g"
	guidLen      = 36
	endpointBase = len(endpointPfx) + guidLen + 2 // prefix, GUID, "-", leg
)

// Leg names an endpoint of an attachment: "s" on the service's network
// (the container's first adapter), "g" on the overlay network (the second,
// with join_global), as the bridge reconciler's legs.
type Leg string

const (
	LegService Leg = legService
	LegGlobal  Leg = legGlobal
)

// marks writes and reads the names of one owner.
type marks struct{ journal string }

// newMarks keeps the journal id's letters and digits (at most 64); an
// Owner without a journal id writes and owns "nojournal" (HCN objects
// were never made by a daemon before journal ids).
func newMarks(o effects.Owner) marks {
	j := strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || 'A' <= r && r <= 'Z' {
			return r
		}
		return -1
	}, o.Journal)
	if len(j) > journalMax {
		j = j[:journalMax]
	}
	if j == "" {
		j = noJournal
	}
	return marks{journal: strings.ToLower(j)}
}

func (m marks) overlay() string               { return overlayBase + "." + m.journal }
func (m marks) service(service string) string { return servicePfx + service + "." + m.journal }
func (m marks) endpoint(guid string, leg Leg) string {
	return endpointPfx + guid + "-" + string(leg) + "." + m.journal
}

// mark is a parsed name.
type mark struct {
	kind    string // "overlay", "service", "endpoint"
	service string // kind service
	guid    string // kind endpoint: the namespace it is for
	leg     Leg    // kind endpoint
	journal string
}

// parseName reads a name; ok is false when it is no name of this daemon
// (another program's, or the reference daemon's "zlayer-overlay" and
// "zlayer-overlay-svc-…", which carry no owner).
func parseName(name string) (m mark, ok bool) {
	if !strings.HasPrefix(name, namePrefix) {
		return mark{}, false
	}
	i := strings.LastIndexByte(name, '.')
	if i < 0 || i == len(name)-1 {
		return mark{}, false
	}
	base, j := name[:i], name[i+1:]
	m.journal = j
	switch {
	case base == overlayBase:
		m.kind = "overlay"
	case strings.HasPrefix(base, servicePfx):
		m.kind, m.service = "service", base[len(servicePfx):]
		if projections.ValidateLabel("service", m.service) != nil {
			return mark{}, false
		}
	case strings.HasPrefix(base, endpointPfx) && len(base) == endpointBase && base[endpointBase-2] == '-':
		g, isGUID := projections.CanonicalGUID(base[len(endpointPfx) : len(endpointPfx)+guidLen])
		leg := Leg(base[endpointBase-1:])
		if !isGUID || g != base[len(endpointPfx):len(endpointPfx)+guidLen] || (leg != LegService && leg != LegGlobal) {
			return mark{}, false
		}
		m.kind, m.guid, m.leg = "endpoint", g, leg
	default:
		return mark{}, false
	}
	return m, true
}

// owns reports whether name is a mark of this owner.
func (m marks) owns(name string) (mark, bool) {
	p, ok := parseName(name)
	if !ok || p.journal != m.journal {
		return mark{}, false
	}
	return p, true
}
