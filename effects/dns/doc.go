// Package dns is the node's embedded DNS server (miekg/dns): authoritative
// for the overlay zones (A, AAAA, and PTR for every overlay address with a
// name; SOA on negative answers; TTL 5 s), forwarding other names to the
// host's upstream resolvers with a short timeout, and answering only
// clients on the node's overlay subnets and loopback (REFUSED for anyone
// else: never an open resolver).
//
// Names are answered as registered ("web.service.local") and, inside an
// overlay zone, relative to it ("web" also answers as "web.<zone>"). The
// zones are the dns_domain values attachments carry and
// "<deployment>.local."; names under ".local." are link-local (RFC 6762)
// and never forwarded, so an unknown one is NXDOMAIN.
//
// The server listens on the node's overlay address and every service
// gateway, port 53, UDP and TCP (bound with IP_FREEBIND, so before the
// device has its address), and on the local addresses the daemon is
// configured with.
package dns
