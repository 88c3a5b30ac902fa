package projections

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"unicode/utf8"
)

// Validation of the textual inputs that reach Decide. Every helper takes the
// wire field name so that its error says which field is wrong.

// ParseKey checks a WireGuard key in standard base64 (44 characters, 32
// bytes) and returns it in canonical form.
func ParseKey(field, s string) (string, error) {
	if s == "" {
		return "", errf(field, "missing WireGuard public key")
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return "", errf(field, "%q is not standard base64: %v", s, err)
	}
	if len(b) != 32 {
		return "", errf(field, "%q decodes to %d bytes, a WireGuard key has 32", s, len(b))
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// parseNetwork parses a network CIDR that must not carry host bits.
func parseNetwork(field, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return netip.Prefix{}, errf(field, "%q is not a CIDR: %v", s, err)
	}
	if p.Masked() != p {
		return netip.Prefix{}, errf(field, "%s has host bits set (the network is %s)", s, p.Masked())
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, errf(field, "%s is an IPv4-mapped IPv6 prefix; use the IPv4 form", s)
	}
	max := 30
	if p.Addr().Is6() {
		max = 126
	}
	if p.Bits() > max {
		return netip.Prefix{}, errf(field, "%s is too small to hold addresses (at most /%d)", s, max)
	}
	return p, nil
}

// parseAllowedIP parses one AllowedIP; like WireGuard, host bits are masked.
func parseAllowedIP(field, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return netip.Prefix{}, errf(field, "%q is not a CIDR: %v", s, err)
	}
	return p.Masked(), nil
}

// ParseAllowedIPs splits a comma-separated CIDR list, masks, de-duplicates
// and sorts it. Empty entries are skipped, so "" is the empty set.
func ParseAllowedIPs(field, s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		p, err := parseAllowedIP(field, part)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return SortPrefixes(out), nil
}

// SortPrefixes sorts ps by address, then length, drops repeats, and
// returns it (nil when empty). It reuses ps.
func SortPrefixes(ps []netip.Prefix) []netip.Prefix {
	sort.Slice(ps, func(i, j int) bool { return comparePrefix(ps[i], ps[j]) < 0 })
	out := ps[:0]
	for i, p := range ps {
		if i > 0 && p == ps[i-1] {
			continue
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// FormatPrefixes joins prefixes the way the wire carries allowed_ips.
func FormatPrefixes(ps []netip.Prefix) string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// parseEndpoint accepts "" (no endpoint: the peer roams to us) or an
// "ip:port" / "[ipv6]:port" literal. Host names are refused: the kernel and
// wireguard-go take addresses only, and a name resolved once would go stale.
func parseEndpoint(field, s string) (string, error) {
	if s == "" {
		return "", nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return "", errf(field, "%q is not an ip:port endpoint (host names are not resolved): %v", s, err)
	}
	if ap.Port() == 0 {
		return "", errf(field, "%q has port 0", s)
	}
	if !ap.Addr().IsValid() || ap.Addr().IsUnspecified() {
		return "", errf(field, "%q has no usable address", s)
	}
	return ap.String(), nil
}

// ValidateLabel checks a service name: one DNS label (RFC 1035 length, 1 to
// 63 bytes) of letters, digits, '-' and '_', not starting or ending with '-'.
func ValidateLabel(field, s string) error {
	if s == "" {
		return errf(field, "must not be empty")
	}
	if len(s) > 63 {
		return errf(field, "%q is %d bytes long; at most 63 (one DNS label)", s, len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
		if !ok {
			return errf(field, "%q contains %q; use letters, digits, '-' or '_'", s, c)
		}
	}
	if s[0] == '-' || s[len(s)-1] == '-' {
		return errf(field, "%q must not start or end with '-'", s)
	}
	return nil
}

// NormalizeDNSName checks a DNS name (RFC 1035: labels of 1 to 63 bytes,
// at most 253 bytes without the final dot) and returns it lower-cased,
// without a trailing dot.
func NormalizeDNSName(field, s string) (string, error) {
	n := strings.TrimSuffix(s, ".")
	if n == "" {
		return "", errf(field, "must not be empty")
	}
	if len(n) > 253 {
		return "", errf(field, "name is %d bytes long; at most 253", len(n))
	}
	for _, label := range strings.Split(n, ".") {
		if label == "" {
			return "", errf(field, "%q has an empty label", s)
		}
		if err := ValidateLabel(field, label); err != nil {
			return "", errf(field, "%q: label %v", s, err.(*Error).Msg)
		}
	}
	return strings.ToLower(n), nil
}

// validateText checks a free-form identifier such as a deployment name.
func validateText(field, s string, required bool) error {
	if s == "" {
		if required {
			return errf(field, "must not be empty")
		}
		return nil
	}
	if len(s) > 253 {
		return errf(field, "is %d bytes long; at most 253", len(s))
	}
	if !utf8.ValidString(s) {
		// The journal's JSON would store U+FFFD instead: the state
		// replayed after a restart would differ from the live one
		// (FuzzDecide found it with a deployment name).
		return errf(field, "%q is not valid UTF-8", s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return errf(field, "%q contains a control character", s)
		}
	}
	return nil
}

func describeOwner(o Owner) string {
	switch o.Kind {
	case OwnerNode:
		return "the node's overlay address"
	case OwnerGateway:
		return fmt.Sprintf("the gateway of service %s", o.Pool[len(poolServicePrefix):])
	case OwnerContainer:
		return "held by container " + o.Ref
	case OwnerGuest:
		return "held by guest " + o.Ref
	case OwnerReservation:
		return "reserved by allocate_ip"
	}
	return string(o.Kind)
}
