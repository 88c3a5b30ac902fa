package projections

import (
	"crypto/sha1"
	"encoding/hex"
	"strconv"
	"strings"
)

// Windows containers (windows_container handles). An attach allocates from
// the service's pool as on Linux (and, with join_global, a second address
// from the node slice), records the attach's DNS settings, and decides the
// container's HCN namespace GUID: the answer `attached {ip,
// namespace_guid}` carries it, the event journals it, and a repeat
// answers the same. The reference client detaches by that GUID (it sends
// it in container_id), so decideDetach finds an attachment by either.

// namespaceSpace is the UUID namespace of the namespace GUIDs (a v4 UUID
// chosen once for this purpose; never change it).
var namespaceSpace = [16]byte{0x7d, 0x0c, 0x3e, 0x52, 0x9a, 0x41, 0x4b, 0x8e, 0xa6, 0x1f, 0x52, 0x2b, 0x6c, 0x0e, 0x91, 0xd4}

// NamespaceGUID is the HCN namespace GUID of a windows_container attach: a
// name-based (SHA-1, version 5) UUID of the node's public key, the handle
// key and the sequence number the attach's event gets. It depends on
// nothing but the state and the command (no journal id, no clock, no
// randomness), differs for every attach of one journal (the sequence
// grows), and, through the node key, between journals of different nodes.
// The form is bare and lowercase: 8-4-4-4-12 hex digits.
func NamespaceGUID(nodeKey, handleKey string, seq uint64) string {
	h := sha1.New()
	h.Write(namespaceSpace[:])
	h.Write([]byte(nodeKey))
	h.Write([]byte{0})
	h.Write([]byte(handleKey))
	h.Write([]byte{0})
	h.Write([]byte(strconv.FormatUint(seq, 10)))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50 // version 5
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	return formatGUID(u)
}

func formatGUID(u [16]byte) string {
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}

// CanonicalGUID returns s as a bare lowercase GUID (braces dropped), and
// false when s is no GUID.
func CanonicalGUID(s string) (string, bool) {
	s = strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}")
	if len(s) != 36 {
		return "", false
	}
	for i, c := range s {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return "", false
			}
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
		default:
			return "", false
		}
	}
	return strings.ToLower(s), true
}

// attachmentByNamespace finds the windows_container attachment whose
// namespace GUID is guid (any case, braces allowed); nil when none is.
func (s *State) attachmentByNamespace(guid string) *Attachment {
	g, ok := CanonicalGUID(guid)
	if !ok {
		return nil
	}
	for _, a := range s.Attachments {
		if a.Handle.Platform == PlatformWindows && a.NamespaceGUID == g {
			return a
		}
	}
	return nil
}

// decideAttachWindows decides a windows_container attach (the handle,
// service name and DNS domain are validated, the platform checked).
func (s *State) decideAttachWindows(c Attach) (Decision, error) {
	sv, ok := s.Services[c.Service]
	if !ok {
		return Decision{}, errf("service", "service %s is not set up on this node (setup_service_overlay first)", c.Service)
	}
	key := c.Handle.Key()
	if a, ok := s.Attachments[key]; ok {
		if a.Service != c.Service {
			return Decision{}, errf("service", "%s is already attached to service %s; detach_container first", key, a.Service)
		}
		if c.HandleIP.IsValid() && c.HandleIP != a.IP {
			return Decision{}, errf("handle.ip", "%s is already attached with %s, not %s; detach_container first", key, a.IP, c.HandleIP)
		}
		// A repeat changes nothing (join_global and DNS included): the
		// first attach decided the container's endpoints.
		return Decision{Reply: ReplyAttached{IP: a.IP, NamespaceGUID: a.NamespaceGUID}}, nil
	}
	if a := s.attachmentByNamespace(c.Handle.ContainerID); a != nil {
		return Decision{}, errf("handle.container_id", "%s is the namespace GUID of %s, not a container id", c.Handle.ContainerID, a.Handle.Key())
	}
	pool := servicePool(c.Service)
	var evs []Event
	ip := c.HandleIP
	if ip.IsValid() {
		if ip.Zone() != "" || !usable(sv.Subnet, ip) {
			return Decision{}, errf("handle.ip", "%s is not a usable address of service %s's subnet %s", ip, c.Service, sv.Subnet)
		}
		if o, taken := s.IPAM.Owners[ip]; taken {
			if o.Kind != OwnerReservation || o.Pool != pool {
				return Decision{}, errf("handle.ip", "%s is %s", ip, describeOwner(o))
			}
			// Reserved by allocate_ip for this service: the attach
			// takes the reservation over.
			evs = append(evs, &IPReleased{IP: ip})
		}
	} else {
		var err error
		if ip, err = s.nextFree("service", pool, "service "+c.Service+" subnet"); err != nil {
			return Decision{}, err
		}
	}
	ev := &ContainerAttached{Handle: c.Handle, Service: c.Service, IP: ip, DNSServer: c.DNSServer, DNSDomain: c.DNSDomain}
	if c.JoinGlobal && s.Global != nil {
		var err error
		if ev.GlobalIP, err = s.nextFree("join_global", poolSlice, "node slice"); err != nil {
			return Decision{}, err
		}
	}
	ev.NamespaceGUID = NamespaceGUID(s.Node.PublicKey, key, s.Seq+uint64(len(evs))+1)
	evs = append(evs, ev)
	return Decision{Events: evs, Reply: ReplyAttached{IP: ip, NamespaceGUID: ev.NamespaceGUID}}, nil
}
