package projections

import "net/netip"

// DNSRecord is a registered name: at most one address per family.
type DNSRecord struct {
	Name string     `json:"name"`
	V4   netip.Addr `json:"a,omitzero"`
	V6   netip.Addr `json:"aaaa,omitzero"`
}

type (
	DNSRegistered struct {
		Name string     `json:"name"`
		IP   netip.Addr `json:"ip"`
	}
	DNSUnregistered struct {
		Name string `json:"name"`
	}
)

func (*DNSRegistered) EventType() string      { return "dns_registered" }
func (*DNSRegistered) EventVersion() uint16   { return 1 }
func (*DNSUnregistered) EventType() string    { return "dns_unregistered" }
func (*DNSUnregistered) EventVersion() uint16 { return 1 }

func (s *State) applyDNSRegistered(e *DNSRegistered) {
	r := s.DNS[e.Name]
	if r == nil {
		r = &DNSRecord{Name: e.Name}
		s.DNS[e.Name] = r
	}
	if e.IP.Is4() {
		r.V4 = e.IP
	} else {
		r.V6 = e.IP
	}
}

func (s *State) decideRegisterDNS(c RegisterDNS) (Decision, error) {
	name, err := NormalizeDNSName("name", c.Name)
	if err != nil {
		return Decision{}, err
	}
	ip := c.IP.Unmap()
	if !ip.IsValid() || ip.IsUnspecified() {
		return Decision{}, errf("ip", "%v is not a usable address", c.IP)
	}
	if r := s.DNS[name]; r != nil && (r.V4 == ip || r.V6 == ip) {
		return okWith()
	}
	return okWith(&DNSRegistered{Name: name, IP: ip})
}

func (s *State) decideUnregisterDNS(c UnregisterDNS) (Decision, error) {
	name, err := NormalizeDNSName("name", c.Name)
	if err != nil {
		return Decision{}, err
	}
	if _, ok := s.DNS[name]; !ok {
		return okWith()
	}
	return okWith(&DNSUnregistered{Name: name})
}
