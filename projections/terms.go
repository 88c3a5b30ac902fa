package projections

import (
	"net/netip"
	"slices"
	"strings"
)

// Object terms: the names of the things an event touches, as the journal's
// secondary index stores them and `overlayctl history` looks them up. A
// term is a kind, a colon and the object's canonical text:
//
//	ip:10.200.3.7          an address (ip, global_ip, gateway, node_ip,
//	                       dns_server, a DNS record's address)
//	cidr:10.200.3.0/24     a prefix (subnet, slice, cluster, allowed IPs)
//	service:web            a service (service, scope.service, pool)
//	name:web.svc.cluster   a DNS name
//	peer:<base64 key>      a WireGuard public key (public_key, old_public_key)
//	handle:linux_pid:4242  a container or guest handle (Handle.Key)
//	dev:br-web             a device or bridge name
//
// Terms are read from the payload's JSON by field name, so a new event
// type is indexed without code here as long as it uses these field names,
// and an event "names X" exactly when its payload carries X in one of
// them. A JournalRepaired's embedded state is not walked: it names
// everything and would make every object's history start with it.
const (
	TermIP      = "ip:"
	TermCIDR    = "cidr:"
	TermService = "service:"
	TermName    = "name:"
	TermPeer    = "peer:"
	TermHandle  = "handle:"
	TermDevice  = "dev:"
)

// TermsVersion changes whenever Terms would index an existing event
// differently, so journals indexed before are re-indexed.
const TermsVersion = 1

// fieldKinds maps a payload field name to the term kind of its string
// value(s).
var fieldKinds = map[string]string{
	"ip": TermIP, "global_ip": TermIP, "gateway": TermIP, "node_ip": TermIP,
	"dns_server": TermIP, "a": TermIP, "aaaa": TermIP,
	"subnet": TermCIDR, "slice_cidr": TermCIDR, "cluster_cidr": TermCIDR,
	"cidr": TermCIDR, "allowed_ips": TermCIDR,
	"service": TermService, "pool": poolKind,
	"name":       TermName,
	"public_key": TermPeer, "old_public_key": TermPeer,
	"device": TermDevice, "bridge": TermDevice,
}

// poolKind marks an IPAM pool name (see addTerm).
const poolKind = "pool:"

// skipFields are not walked.
var skipFields = map[string]bool{"state": true, "lost_types": true}

// Terms returns the object terms of a persisted event (type, version and
// JSON payload), sorted and without duplicates. It never fails: a payload
// it cannot read has no terms.
func Terms(typ string, _ uint16, payload []byte) []string {
	if len(payload) == 0 || payload[0] != '{' {
		return nil
	}
	var out []string
	sc := termScanner{b: payload, out: &out}
	sc.object(nil)
	if sc.bad {
		return nil
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func addTerm(kind, s string, out *[]string) {
	if s == "" || strings.IndexByte(s, 0) >= 0 {
		return
	}
	switch kind {
	case TermIP:
		a, err := netip.ParseAddr(s)
		if err != nil {
			return
		}
		s = a.Unmap().String()
	case TermCIDR:
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return
		}
		s = p.Masked().String()
	case TermName:
		s = strings.TrimSuffix(strings.ToLower(s), ".")
	case poolKind:
		// "service:web" names service web; "slice" is the node's own pool.
		name, ok := strings.CutPrefix(s, poolServicePrefix)
		if !ok || name == "" {
			return
		}
		kind, s = TermService, name
	}
	*out = append(*out, kind+s)
}

// ObjectTerms returns the terms an object given by an operator may be
// indexed under, most specific first: an address, a prefix, a peer key, a
// handle key, or a word that may be a service, a DNS name or a device.
func ObjectTerms(object string) []string {
	object = strings.TrimSpace(object)
	if object == "" {
		return nil
	}
	if a, err := netip.ParseAddr(object); err == nil {
		return []string{TermIP + a.Unmap().String()}
	}
	if p, err := netip.ParsePrefix(object); err == nil {
		return []string{TermCIDR + p.Masked().String()}
	}
	if h, err := ParseHandleKey(object); err == nil {
		return []string{TermHandle + h.Key()}
	}
	if isKeyText(object) {
		return []string{TermPeer + object}
	}
	name := strings.TrimSuffix(strings.ToLower(object), ".")
	return []string{TermService + object, TermName + name, TermDevice + object}
}

// isKeyText: 44 characters of standard base64 ending in '=' (a 32-byte
// WireGuard key).
func isKeyText(s string) bool {
	if len(s) != 44 || s[43] != '=' {
		return false
	}
	for _, c := range s[:43] {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}
