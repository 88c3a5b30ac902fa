package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/projections"
)

// The node views (status, peers, ipam, services, attachments, dns): tables
// of the state, and of the daemon's live status when it runs. Offline they
// read the journal's state; columns only the daemon knows (handshakes,
// counters, health, problems) are then "-", and the output says so.

// view is what a view command reads: the state, and the daemon's status
// when online.
type view struct {
	src    *source
	st     *projections.State
	status *ipc.StatusResult // nil offline
	live   bool              // the view has live-only columns
}

// offlineNote is printed under a table whose live-only columns are empty.
const offlineNote = "(offline: the daemon is not running; live-only columns are shown as -)"

// loadView reads the state (and, online, the status when live: the view
// has live-only columns).
func (a *app) loadView(ctx context.Context, live bool) (*view, error) {
	src, err := a.source(ctx)
	if err != nil {
		return nil, err
	}
	v := &view{src: src, live: live}
	if v.st, _, err = loadState(ctx, src); err != nil {
		src.Close()
		return nil, err
	}
	if live && src.Online() {
		r, err := src.client.Call(ctx, ipc.Status{})
		if err != nil {
			src.Close()
			return nil, fmt.Errorf("status: %w", err)
		}
		s := r.(ipc.StatusResult)
		v.status = &s
	}
	return v, nil
}

// viewCmd builds a view command: load reads the view, show prints it.
func viewCmd(a *app, use, short, long string, live bool, show func(*view, *printer) error) *cobra.Command {
	return &cobra.Command{
		Use: use, Short: short, Long: long, Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			v, err := a.loadView(c.Context(), live)
			if err != nil {
				return err
			}
			defer v.src.Close()
			return show(v, a.printer())
		},
	}
}

// list prints rows: a table (after the source line), a JSON object
// {"source", "seq", key: [rows]}, or one JSON row a line.
func list[T any](p *printer, v *view, key string, rows []T, head []string, cells func(T) []string) error {
	switch p.format {
	case "json":
		if rows == nil {
			rows = []T{}
		}
		return p.Object(listDoc(v, key, rows))
	case "jsonl":
		for _, r := range rows {
			if err := p.Item(r); err != nil {
				return err
			}
		}
		return nil
	}
	fmt.Fprintf(p.w, "source: %s, state at event %d\n", v.src, v.st.Seq)
	t := p.NewTable(head...)
	for _, r := range rows {
		t.Row(cells(r)...)
	}
	if err := t.Flush(); err != nil {
		return err
	}
	if v.live && v.status == nil {
		fmt.Fprintln(p.w, offlineNote)
	}
	return nil
}

// listDoc is {"source", "online", "seq", key: rows}, in that order.
func listDoc(v *view, key string, rows any) json.RawMessage {
	head, _ := json.Marshal(struct {
		Source string `json:"source"`
		Online bool   `json:"online"`
		Seq    uint64 `json:"seq"`
	}{v.src.String(), v.src.Online(), v.st.Seq})
	k, _ := json.Marshal(key)
	body, err := json.Marshal(rows)
	if err != nil {
		body = []byte("null")
	}
	doc := append(head[:len(head)-1], ',')
	doc = append(append(append(doc, k...), ':'), body...)
	return append(doc, '}')
}

func newStatusCmd(a *app) *cobra.Command {
	return viewCmd(a, "status", "The node at a glance: identity, global overlay, counts, health, problems",
		`status shows the node: its key, global overlay, how many services, peers,
attachments, addresses and DNS names it holds and, from the live daemon,
whether its journal is degraded and what is wrong now (problems).`, true,
		func(v *view, p *printer) error { return showStatus(v, p) })
}

// statusView is status -o json.
type statusView struct {
	Source       string        `json:"source"`
	Online       bool          `json:"online"`
	Seq          uint64        `json:"seq"`
	NodeID       uint64        `json:"node_id"`
	PublicKey    string        `json:"public_key,omitempty"`
	Interface    string        `json:"interface,omitempty"`
	NodeIP       string        `json:"node_ip,omitempty"`
	ClusterCIDR  string        `json:"cluster_cidr,omitempty"`
	SliceCIDR    string        `json:"slice_cidr,omitempty"`
	Port         uint16        `json:"wg_port,omitempty"`
	NAT          bool          `json:"nat"`
	Deployment   string        `json:"deployment,omitempty"`
	Services     int           `json:"services"`
	Peers        int           `json:"peers"`
	Attachments  int           `json:"attachments"`
	Addresses    int           `json:"addresses"`
	DNSNames     int           `json:"dns_names"`
	PeersHealthy *int          `json:"peers_healthy,omitempty"`
	Degraded     *bool         `json:"degraded,omitempty"`
	Problems     []ipc.Problem `json:"problems,omitempty"`
}

func statusOf(v *view) statusView {
	st := v.st
	s := statusView{Source: v.src.String(), Online: v.src.Online(), Seq: st.Seq, NodeID: st.Node.ID, PublicKey: st.Node.PublicKey,
		Services: len(st.Services), Attachments: len(st.Attachments), Addresses: len(st.IPAM.Owners), DNSNames: len(st.DNS)}
	for _, m := range st.Peers {
		s.Peers += len(m)
	}
	if g := st.Global; g != nil {
		s.Interface, s.NodeIP, s.ClusterCIDR, s.SliceCIDR = g.Device, g.NodeIP.String(), g.ClusterCIDR.String(), g.Slice.String()
		s.Port, s.NAT, s.Deployment = g.Port, g.NAT, g.Deployment
	}
	if r := v.status; r != nil {
		if r.PublicKey != nil {
			s.PublicKey = *r.PublicKey
		}
		healthy := 0
		for _, p := range r.Peers {
			if p.Health == ipc.PeerHealthy {
				healthy++
			}
		}
		degraded := r.Degraded
		s.PeersHealthy, s.Degraded, s.Problems = &healthy, &degraded, r.Problems
	}
	return s
}

func showStatus(v *view, p *printer) error {
	s := statusOf(v)
	if !p.Table() {
		return p.Object(s)
	}
	w := p.w
	fmt.Fprintf(w, "source:       %s\n", s.Source)
	fmt.Fprintf(w, "state:        at event %d\n", s.Seq)
	fmt.Fprintf(w, "node:         id %d, public key %s\n", s.NodeID, dash(s.PublicKey))
	if s.Interface != "" {
		nat := "off"
		if s.NAT {
			nat = "on"
		}
		fmt.Fprintf(w, "global:       %s port %d, node %s, cluster %s, slice %s, nat %s, deployment %s\n",
			s.Interface, s.Port, s.NodeIP, s.ClusterCIDR, s.SliceCIDR, nat, s.Deployment)
	} else {
		fmt.Fprintln(w, "global:       not set up")
	}
	healthy := "-"
	if s.PeersHealthy != nil {
		healthy = fmt.Sprint(*s.PeersHealthy)
	}
	fmt.Fprintf(w, "peers:        %d (%s healthy on the global device)\n", s.Peers, healthy)
	fmt.Fprintf(w, "services:     %d\n", s.Services)
	fmt.Fprintf(w, "attachments:  %d\n", s.Attachments)
	fmt.Fprintf(w, "addresses:    %d held\n", s.Addresses)
	fmt.Fprintf(w, "dns names:    %d\n", s.DNSNames)
	if s.Degraded == nil {
		fmt.Fprintln(w, "journal:      -")
		fmt.Fprintln(w, "problems:     -")
		fmt.Fprintln(w, offlineNote)
		return nil
	}
	if *s.Degraded {
		fmt.Fprintln(w, "journal:      DEGRADED: writes are refused (reads and the data plane go on)")
	} else {
		fmt.Fprintln(w, "journal:      writable")
	}
	if len(s.Problems) == 0 {
		fmt.Fprintln(w, "problems:     none")
	} else {
		fmt.Fprintf(w, "problems:     %d\n", len(s.Problems))
		for _, pr := range s.Problems {
			fmt.Fprintf(w, "  - %s: %s (since %s)\n", pr.Resource, pr.Error, time.Unix(pr.SinceUnixSecs, 0).UTC().Format(time.RFC3339))
		}
	}
	return nil
}

func newPeersCmd(a *app) *cobra.Command {
	return viewCmd(a, "peers", "WireGuard peers with endpoint, handshake age, health and rx/tx, like wg show",
		`peers lists every peer of every scope (the global device and dedicated
service devices). From the live daemon the global device's peers carry the
endpoint in use, the last handshake's age, health and the bytes received and
sent; offline (and for dedicated devices) those columns are "-".`, true,
		func(v *view, p *printer) error {
			now := time.Now()
			return list(p, v, "peers", peerRows(v), []string{"SCOPE", "PUBLIC KEY", "ENDPOINT", "ALLOWED IPS", "HANDSHAKE", "HEALTH", "RX", "TX", "KEEPALIVE"},
				func(r peerRow) []string {
					return []string{r.Scope, r.PublicKey, r.Endpoint, r.AllowedIPs, handshakeAge(now, r.LastHandshake, v.status != nil && r.Live),
						r.Health, bytesOr(r.RxBytes, r.Live), bytesOr(r.TxBytes, r.Live), keepalive(r.Keepalive)}
				})
		})
}

// peerRow is one peer (peers -o json/jsonl).
type peerRow struct {
	Scope         string `json:"scope"`
	PublicKey     string `json:"public_key"`
	Endpoint      string `json:"endpoint,omitempty"`
	AllowedIPs    string `json:"allowed_ips"`
	Keepalive     uint64 `json:"keepalive,omitempty"`
	Guest         string `json:"guest,omitempty"`
	Live          bool   `json:"live"` // the live columns below are the daemon's
	LastHandshake int64  `json:"last_handshake_unix_secs,omitempty"`
	Health        string `json:"health,omitempty"`
	RxBytes       uint64 `json:"rx_bytes,omitempty"`
	TxBytes       uint64 `json:"tx_bytes,omitempty"`
}

func peerRows(v *view) []peerRow {
	live := map[string]ipc.PeerStatus{}
	if v.status != nil {
		for _, p := range v.status.Peers {
			live[p.PublicKey] = p
		}
	}
	var rows []peerRow
	for _, scope := range sortedKeys(v.st.Peers) {
		for _, k := range sortedKeys(v.st.Peers[scope]) {
			pe := v.st.Peers[scope][k]
			r := peerRow{Scope: scope, PublicKey: k, Endpoint: pe.Endpoint, AllowedIPs: projections.FormatPrefixes(pe.AllowedIPs),
				Keepalive: pe.Keepalive, Guest: pe.Guest}
			if pe.ObservedEndpoint != "" {
				r.Endpoint = pe.ObservedEndpoint
			}
			if ps, ok := live[k]; ok && scope == "global" {
				r.Live, r.LastHandshake, r.Health, r.RxBytes, r.TxBytes = true, ps.LastHandshakeUnixSecs, ps.Health, ps.RxBytes, ps.TxBytes
				if ps.Endpoint != "" {
					r.Endpoint = ps.Endpoint
				}
			}
			rows = append(rows, r)
		}
	}
	return rows
}

// handshakeAge is how long ago the last handshake was, as wg show says it.
func handshakeAge(now time.Time, unix int64, live bool) string {
	switch {
	case !live:
		return "-"
	case unix == 0:
		return "never"
	}
	d := now.Sub(time.Unix(unix, 0)).Truncate(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String() + " ago"
}

func bytesOr(n uint64, live bool) string {
	if !live {
		return "-"
	}
	return humanBytes(n)
}

// humanBytes is n in B, KiB, MiB, GiB or TiB, as wg show prints transfer.
func humanBytes(n uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.2f %s", f, units[i])
}

func keepalive(s uint64) string {
	if s == 0 {
		return "off"
	}
	return fmt.Sprintf("%ds", s)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newIPAMCmd(a *app) *cobra.Command {
	var addrs bool
	c := viewCmd(a, "ipam", "Address pools with their use (size, used, free); --addresses lists every held address",
		`ipam lists the node's address pools (the node slice and each service subnet)
with their usable size, how many addresses are held (by kind) and how many
are free. --addresses lists every held address with its owner.`, false,
		func(v *view, p *printer) error {
			if addrs {
				return list(p, v, "addresses", addressRows(v.st), []string{"ADDRESS", "POOL", "KIND", "OWNER"},
					func(r addressRow) []string { return []string{r.Address, r.Pool, r.Kind, r.Ref} })
			}
			return list(p, v, "pools", poolRows(v.st), []string{"POOL", "PREFIX", "SIZE", "USED", "FREE", "NODE", "GATEWAY", "CONTAINERS", "GUESTS", "RESERVED"},
				func(r poolRow) []string {
					return []string{r.Pool, r.Prefix, count(r.Size), fmt.Sprint(r.Used), count(r.Free), fmt.Sprint(r.Node), fmt.Sprint(r.Gateway),
						fmt.Sprint(r.Containers), fmt.Sprint(r.Guests), fmt.Sprint(r.Reserved)}
				})
		})
	c.Flags().BoolVar(&addrs, "addresses", false, "list every held address with its pool, kind and owner")
	return c
}

// poolRow is one address pool (ipam -o json/jsonl). Size and Free
// saturate at 2^64-1 (an IPv6 /64 or larger).
type poolRow struct {
	Pool       string `json:"pool"`
	Prefix     string `json:"prefix"`
	Size       uint64 `json:"size"`
	Used       int    `json:"used"`
	Free       uint64 `json:"free"`
	Node       int    `json:"node"`
	Gateway    int    `json:"gateway"`
	Containers int    `json:"containers"`
	Guests     int    `json:"guests"`
	Reserved   int    `json:"reserved"`
}

func poolRows(st *projections.State) []poolRow {
	var pools []string
	if st.Global != nil {
		pools = append(pools, "slice")
	}
	for _, n := range sortedKeys(st.Services) {
		pools = append(pools, "service:"+n)
	}
	byPool := map[string]*poolRow{}
	var rows []poolRow
	for _, name := range pools {
		pfx, _ := st.PoolPrefix(name)
		rows = append(rows, poolRow{Pool: name, Prefix: pfx.String(), Size: usableSize(pfx)})
	}
	for i := range rows {
		byPool[rows[i].Pool] = &rows[i]
	}
	for _, o := range st.IPAM.Owners {
		r := byPool[o.Pool]
		if r == nil {
			continue
		}
		r.Used++
		switch o.Kind {
		case projections.OwnerNode:
			r.Node++
		case projections.OwnerGateway:
			r.Gateway++
		case projections.OwnerContainer:
			r.Containers++
		case projections.OwnerGuest:
			r.Guests++
		case projections.OwnerReservation:
			r.Reserved++
		}
	}
	for i := range rows {
		if rows[i].Size >= uint64(rows[i].Used) {
			rows[i].Free = rows[i].Size - uint64(rows[i].Used)
		}
	}
	return rows
}

// usableSize is the number of addresses a pool hands out: all but the
// network address (and, in IPv4, the broadcast address), saturated.
func usableSize(p netip.Prefix) uint64 {
	if !p.IsValid() {
		return 0
	}
	host := p.Addr().BitLen() - p.Bits()
	if host >= 64 {
		return math.MaxUint64
	}
	n := uint64(1) << host
	if n <= 2 && p.Addr().Is4() {
		return 0
	}
	n--
	if p.Addr().Is4() {
		n--
	}
	return n
}

func count(n uint64) string {
	if n == math.MaxUint64 {
		return ">=2^64"
	}
	return fmt.Sprint(n)
}

// addressRow is one held address (ipam --addresses).
type addressRow struct {
	Address string `json:"address"`
	Pool    string `json:"pool"`
	Kind    string `json:"kind"`
	Ref     string `json:"owner,omitempty"`
}

func addressRows(st *projections.State) []addressRow {
	var addrs []netip.Addr
	for a := range st.IPAM.Owners {
		addrs = append(addrs, a)
	}
	sortAddrs(addrs)
	rows := make([]addressRow, 0, len(addrs))
	for _, a := range addrs {
		o := st.IPAM.Owners[a]
		rows = append(rows, addressRow{Address: a.String(), Pool: o.Pool, Kind: string(o.Kind), Ref: o.Ref})
	}
	return rows
}

func sortAddrs(a []netip.Addr) {
	slices.SortFunc(a, func(x, y netip.Addr) int { return x.Compare(y) })
}

func newServicesCmd(a *app) *cobra.Command {
	return viewCmd(a, "services", "Service overlays: mode, subnet, gateway, bridge, dedicated device, attachments",
		"services lists the node's service overlays.", false,
		func(v *view, p *printer) error {
			return list(p, v, "services", serviceRows(v.st), []string{"NAME", "MODE", "SUBNET", "GATEWAY", "BRIDGE", "DEVICE", "PORT", "PUBLIC KEY", "ATTACHMENTS", "PEERS"},
				func(r serviceRow) []string {
					port := ""
					if r.Port != 0 {
						port = fmt.Sprint(r.Port)
					}
					return []string{r.Name, r.Mode, r.Subnet, r.Gateway, r.Bridge, r.Device, port, r.PublicKey, fmt.Sprint(r.Attachments), fmt.Sprint(r.Peers)}
				})
		})
}

// serviceRow is one service (services -o json/jsonl).
type serviceRow struct {
	Name        string `json:"name"`
	Mode        string `json:"mode"`
	Subnet      string `json:"subnet"`
	Gateway     string `json:"gateway"`
	Bridge      string `json:"bridge"`
	Device      string `json:"device,omitempty"`
	Port        uint16 `json:"wg_port,omitempty"`
	PublicKey   string `json:"public_key,omitempty"`
	Attachments int    `json:"attachments"`
	Peers       int    `json:"peers"`
}

func serviceRows(st *projections.State) []serviceRow {
	att := map[string]int{}
	for _, at := range st.Attachments {
		att[at.Service]++
	}
	var rows []serviceRow
	for _, n := range sortedKeys(st.Services) {
		sv := st.Services[n]
		r := serviceRow{Name: n, Mode: sv.Mode, Subnet: sv.Subnet.String(), Gateway: sv.Gateway.String(), Bridge: sv.Bridge,
			Attachments: att[n], Peers: len(st.Peers[projections.Scope{Service: n}.Key()])}
		if d := sv.Dedicated; d != nil {
			r.Device, r.Port, r.PublicKey = d.Device, d.Port, d.PublicKey
		}
		rows = append(rows, r)
	}
	return rows
}

func newAttachmentsCmd(a *app) *cobra.Command {
	return viewCmd(a, "attachments", "Containers and guests attached to services: handle, service, addresses, netns, DNS",
		"attachments lists the containers (linux_pid, windows) and guests attached to services.", false,
		func(v *view, p *printer) error {
			return list(p, v, "attachments", attachmentRows(v.st), []string{"HANDLE", "SERVICE", "IP", "GLOBAL IP", "NETNS", "DNS", "GUEST KEY"},
				func(r attachmentRow) []string {
					netns := ""
					if r.NetnsInode != 0 {
						netns = fmt.Sprint(r.NetnsInode)
					}
					return []string{r.Handle, r.Service, r.IP, r.GlobalIP, netns, strings.TrimSpace(r.DNSServer + " " + r.DNSDomain), r.PublicKey}
				})
		})
}

// attachmentRow is one attachment (attachments -o json/jsonl).
type attachmentRow struct {
	Handle     string `json:"handle"`
	Service    string `json:"service"`
	IP         string `json:"ip"`
	GlobalIP   string `json:"global_ip,omitempty"`
	NetnsInode uint64 `json:"netns_inode,omitempty"`
	DNSServer  string `json:"dns_server,omitempty"`
	DNSDomain  string `json:"dns_domain,omitempty"`
	PublicKey  string `json:"public_key,omitempty"`
}

func attachmentRows(st *projections.State) []attachmentRow {
	var rows []attachmentRow
	for _, k := range sortedKeys(st.Attachments) {
		at := st.Attachments[k]
		r := attachmentRow{Handle: k, Service: at.Service, IP: at.IP.String(), NetnsInode: at.NetnsInode, DNSDomain: at.DNSDomain, PublicKey: at.PublicKey}
		if at.GlobalIP.IsValid() {
			r.GlobalIP = at.GlobalIP.String()
		}
		if at.DNSServer.IsValid() {
			r.DNSServer = at.DNSServer.String()
		}
		rows = append(rows, r)
	}
	return rows
}

func newDNSCmd(a *app) *cobra.Command {
	return viewCmd(a, "dns", "DNS records the node's resolver answers: name, A, AAAA",
		"dns lists the names the embedded DNS server answers for the overlay.", false,
		func(v *view, p *printer) error {
			return list(p, v, "records", dnsRows(v.st), []string{"NAME", "A", "AAAA"},
				func(r dnsRow) []string { return []string{r.Name, r.A, r.AAAA} })
		})
}

// dnsRow is one DNS name (dns -o json/jsonl).
type dnsRow struct {
	Name string `json:"name"`
	A    string `json:"a,omitempty"`
	AAAA string `json:"aaaa,omitempty"`
}

func dnsRows(st *projections.State) []dnsRow {
	var rows []dnsRow
	for _, n := range sortedKeys(st.DNS) {
		r := st.DNS[n]
		row := dnsRow{Name: n}
		if r.V4.IsValid() {
			row.A = r.V4.String()
		}
		if r.V6.IsValid() {
			row.AAAA = r.V6.String()
		}
		rows = append(rows, row)
	}
	return rows
}
