package wireguard

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// UAPI text (https://www.wireguard.com/xplatform/): keys are hex.

func hexKey(b64 string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(b) != 32 {
		return "", fmt.Errorf("wireguard: bad key %q", b64)
	}
	return hex.EncodeToString(b), nil
}

func b64Key(hexKey string) (string, error) {
	b, err := hex.DecodeString(hexKey)
	if err != nil || len(b) != 32 {
		return "", fmt.Errorf("wireguard: bad hex key %q", hexKey)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// applied is what the reconciler last configured for a peer.
type applied struct {
	Endpoint   netip.AddrPort
	AllowedIPs map[netip.Prefix]bool
	Keepalive  uint16
}

// peerDiff returns the UAPI lines that take the device's peers from have to
// want, updating existing peers in place, and the keys of added peers.
// Additions come before removals.
func peerDiff(have map[string]*applied, want []Peer) (text string, added []string, err error) {
	var b strings.Builder
	wantSet := map[string]bool{}
	for _, p := range want {
		wantSet[p.PublicKey] = true
		hk, err := hexKey(p.PublicKey)
		if err != nil {
			return "", nil, err
		}
		old := have[p.PublicKey]
		if old == nil {
			fmt.Fprintf(&b, "public_key=%s\n", hk)
			if p.Endpoint.IsValid() {
				fmt.Fprintf(&b, "endpoint=%s\n", p.Endpoint)
			}
			fmt.Fprintf(&b, "persistent_keepalive_interval=%d\n", p.Keepalive)
			for _, a := range p.AllowedIPs {
				fmt.Fprintf(&b, "allowed_ip=%s\n", a)
			}
			added = append(added, p.PublicKey)
			continue
		}
		var lines []string
		if p.Endpoint.IsValid() && p.Endpoint != old.Endpoint {
			lines = append(lines, "endpoint="+p.Endpoint.String())
		}
		if p.Keepalive != old.Keepalive {
			lines = append(lines, "persistent_keepalive_interval="+strconv.Itoa(int(p.Keepalive)))
		}
		wantIPs := map[netip.Prefix]bool{}
		for _, a := range p.AllowedIPs {
			wantIPs[a] = true
			if !old.AllowedIPs[a] {
				lines = append(lines, "allowed_ip="+a.String())
			}
		}
		for _, a := range sortedPrefixes(old.AllowedIPs) {
			if !wantIPs[a] {
				lines = append(lines, "allowed_ip=-"+a.String())
			}
		}
		if len(lines) > 0 {
			fmt.Fprintf(&b, "public_key=%s\nupdate_only=true\n%s\n", hk, strings.Join(lines, "\n"))
		}
	}
	for _, k := range sortedKeys(have) {
		if !wantSet[k] {
			hk, err := hexKey(k)
			if err != nil {
				return "", nil, err
			}
			fmt.Fprintf(&b, "public_key=%s\nremove=true\n", hk)
		}
	}
	return b.String(), added, nil
}

func sortedPrefixes(m map[netip.Prefix]bool) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].String() < out[j-1].String(); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// PeerStats is what a device reports about a peer.
type PeerStats struct {
	PublicKey     string // base64
	Endpoint      string // "" when unknown
	LastHandshake time.Time
	RxBytes       uint64
	TxBytes       uint64
	AllowedIPs    []netip.Prefix
	Keepalive     uint16
}

// DeviceStats is a parsed UAPI get.
type DeviceStats struct {
	ListenPort uint16
	Peers      []PeerStats
}

// parseGet parses the answer to a UAPI get.
func parseGet(text string) (*DeviceStats, error) {
	ds := &DeviceStats{}
	var cur *PeerStats
	var sec, nsec int64
	flush := func() {
		if cur != nil {
			if sec != 0 || nsec != 0 {
				cur.LastHandshake = time.Unix(sec, nsec)
			}
			ds.Peers = append(ds.Peers, *cur)
		}
		cur, sec, nsec = nil, 0, 0
	}
	for _, line := range strings.Split(text, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch k {
		case "listen_port":
			n, _ := strconv.ParseUint(v, 10, 16)
			ds.ListenPort = uint16(n)
		case "public_key":
			flush()
			b, err := b64Key(v)
			if err != nil {
				return nil, err
			}
			cur = &PeerStats{PublicKey: b}
		case "endpoint":
			if cur != nil {
				cur.Endpoint = v
			}
		case "last_handshake_time_sec":
			sec, _ = strconv.ParseInt(v, 10, 64)
		case "last_handshake_time_nsec":
			nsec, _ = strconv.ParseInt(v, 10, 64)
		case "rx_bytes":
			if cur != nil {
				cur.RxBytes, _ = strconv.ParseUint(v, 10, 64)
			}
		case "tx_bytes":
			if cur != nil {
				cur.TxBytes, _ = strconv.ParseUint(v, 10, 64)
			}
		case "persistent_keepalive_interval":
			if cur != nil {
				n, _ := strconv.ParseUint(v, 10, 16)
				cur.Keepalive = uint16(n)
			}
		case "allowed_ip":
			if cur != nil {
				if p, err := netip.ParsePrefix(v); err == nil {
					cur.AllowedIPs = append(cur.AllowedIPs, p)
				}
			}
		case "errno":
			if v != "0" {
				return nil, fmt.Errorf("wireguard: UAPI get: errno %s", v)
			}
		}
	}
	flush()
	return ds, nil
}

// appliedFrom rebuilds the applied map from what the device reports.
func appliedFrom(ds *DeviceStats) map[string]*applied {
	out := map[string]*applied{}
	for _, p := range ds.Peers {
		a := &applied{AllowedIPs: map[netip.Prefix]bool{}, Keepalive: p.Keepalive}
		if ap, err := netip.ParseAddrPort(p.Endpoint); err == nil {
			a.Endpoint = ap
		}
		for _, q := range p.AllowedIPs {
			a.AllowedIPs[q] = true
		}
		out[p.PublicKey] = a
	}
	return out
}

// appliedOf records cfg's peers as applied, keeping the endpoint last set
// for peers that carry none now.
func appliedOf(peers []Peer, prev map[string]*applied) map[string]*applied {
	out := make(map[string]*applied, len(peers))
	for _, p := range peers {
		a := &applied{Endpoint: p.Endpoint, Keepalive: p.Keepalive, AllowedIPs: make(map[netip.Prefix]bool, len(p.AllowedIPs))}
		if !a.Endpoint.IsValid() && prev[p.PublicKey] != nil {
			a.Endpoint = prev[p.PublicKey].Endpoint
		}
		for _, q := range p.AllowedIPs {
			a.AllowedIPs[q] = true
		}
		out[p.PublicKey] = a
	}
	return out
}
