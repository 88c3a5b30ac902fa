package metrics

import (
	"encoding/base64"
	"encoding/hex"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zlayer/overlayd/ipc"
)

// Sample is the daemon's state at one scrape, filled by Options.Sample.
// Only Phase, Ready and Reasons are set before the state exists (during
// boot's first phases); Booted says the rest is.
type Sample struct {
	Phase   string
	Ready   bool
	Reasons []string
	// Degraded: the daemon serves but does not do its whole job (the
	// journal is read-only, or a daemon-level problem).
	Degraded bool

	// Booted: the state is loaded; the fields below are set.
	Booted bool
	Boot   Boot

	JournalHead uint64
	// JournalBytes is the journal file's size (-1: none, an in-memory
	// store).
	JournalBytes    int64
	JournalReadOnly bool

	// IPC is the socket server's counters (HasIPC: it serves).
	IPC    ipc.Stats
	HasIPC bool

	Pools       []Pool
	Services    int
	Attachments int
	DNSRecords  int
	Devices     []Device

	// Repaired is the drift repaired since the start, by kind.
	Repaired map[string]uint64
	// AttachFailures counts failed attaches by step (nil: no bridge
	// reconciler, no data plane).
	AttachFailures map[string]uint64
	// NAT: HasNAT when the NAT reconciler runs; NATPresent when its last
	// pass left the table in place.
	HasNAT, NATPresent bool
	// DNSForwarded counts queries forwarded upstream (HasDNS: the DNS
	// server runs).
	DNSForwarded uint64
	HasDNS       bool
	// Problems is how many problems status lists now.
	Problems int
}

// Boot is how the state was loaded at boot.
type Boot struct {
	Duration    time.Duration // the whole load
	StartLoad   time.Duration // the snapshot (or checkpoint) part of it
	Replayed    uint64        // events replayed after it
	SnapshotSeq uint64        // 0: no snapshot used
}

// Pool is one IPAM pool.
type Pool struct {
	Name     string // "slice", "service:<name>"
	Capacity float64
	Used     int
}

// Device is one WireGuard device the state asks for.
type Device struct {
	Name string
	// Peers is how many peers the state gives it.
	Peers int
	// Running: the device exists and Stats was read; Stats holds its
	// peers as the device reports them.
	Running bool
	Stats   []PeerStats
}

// PeerStats is one peer as its device reports it.
type PeerStats struct {
	PublicKey, Endpoint string
	RxBytes, TxBytes    uint64
	LastHandshake       time.Time // zero: never
	Healthy             bool
}

// PeerID is the stable short id of a public key in the per-peer series:
// the hex of the first 8 bytes of the decoded key (the key itself when it
// does not decode).
func PeerID(publicKey string) string {
	b, err := base64.StdEncoding.DecodeString(publicKey)
	if err != nil || len(b) < 8 {
		return publicKey
	}
	return hex.EncodeToString(b[:8])
}

// stateCollector reads a Sample at each scrape and turns it into metrics.
type stateCollector struct {
	sample func(*Sample)
	phases []string

	ready, degraded, phase                              *prometheus.Desc
	bootDuration, bootStart, bootReplayed, bootSnapSeq  *prometheus.Desc
	head, fileBytes, readOnly                           *prometheus.Desc
	conns, refused, evicted, closed, acceptErrs, expens *prometheus.Desc
	poolCap, poolUsed, services, attachments, records   *prometheus.Desc
	wgPeers, wgRx, wgTx, wgHandshake, wgHealthy, wgInfo *prometheus.Desc
	repaired, attachFail, natPresent, forwarded, probs  *prometheus.Desc
}

func desc(sub, name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(Namespace, sub, name), help, labels, nil)
}

func newStateCollector(o Options) *stateCollector {
	return &stateCollector{
		sample: o.Sample, phases: o.Phases,
		ready:    desc("", "ready", "1 when the daemon does its whole job (/readyz answers 200): it serves, the journal takes writes and no daemon-level problem is open."),
		degraded: desc("", "degraded", "1 when the daemon serves but is not ready: the journal is read-only, or a daemon-level problem (socket, metrics listener) is open."),
		phase:    desc("", "phase", "1 for the phase the daemon is in, 0 for the others.", "phase"),

		bootDuration: desc("boot", "replay_duration_seconds", "Time boot took to load the state: the snapshot and the replay of the events after it."),
		bootStart:    desc("boot", "snapshot_load_duration_seconds", "Part of the boot load spent loading the snapshot (or the compacted journal's checkpoint)."),
		bootReplayed: desc("boot", "replayed_events", "Events boot replayed after the snapshot."),
		bootSnapSeq:  desc("boot", "snapshot_sequence", "Sequence number of the snapshot boot started from (0: none)."),

		head:      desc("journal", "head_sequence", "Sequence number of the last durable event."),
		fileBytes: desc("journal", "file_size_bytes", "Size of the journal file."),
		readOnly:  desc("journal", "degraded", "1 while the journal is read-only (a failed write or a damaged file); writes are answered err until it recovers."),

		conns:      desc("ipc", "connections", "Client connections open on the socket."),
		refused:    desc("ipc", "connections_refused_total", "Connections refused at the connection limit (limit) or while out of descriptors (descriptors).", "reason"),
		evicted:    desc("ipc", "connections_evicted_total", "Connections closed to make room for a new one because they had completed no frame."),
		closed:     desc("ipc", "connections_closed_total", "Connections closed by a limit: a started frame too slow (frame_timeout), an outgoing queue past its bound (queue_overflow), a blocked write (write_timeout).", "reason"),
		acceptErrs: desc("ipc", "accept_errors_total", "Failed accepts on the socket."),
		expens:     desc("ipc", "expensive_requests_running", "Expensive requests (whole-journal reads, backups, compactions) in flight."),

		poolCap:     desc("ipam", "pool_capacity", "Usable addresses of an IPAM pool (the node slice, a service subnet).", "pool"),
		poolUsed:    desc("ipam", "pool_used", "Addresses of an IPAM pool that have an owner.", "pool"),
		services:    desc("", "services", "Service overlays set up on this node."),
		attachments: desc("", "attachments", "Containers and guests attached."),
		records:     desc("dns", "records", "DNS names registered."),

		wgPeers:     desc("wireguard", "peers", "Peers the state gives a WireGuard device.", "device"),
		wgRx:        desc("wireguard", "peer_receive_bytes_total", "Bytes received from a peer, as its device counts them (since the device was made).", "device", "peer"),
		wgTx:        desc("wireguard", "peer_transmit_bytes_total", "Bytes sent to a peer, as its device counts them (since the device was made).", "device", "peer"),
		wgHandshake: desc("wireguard", "peer_last_handshake_timestamp_seconds", "Unix time of a peer's last handshake (0: none yet).", "device", "peer"),
		wgHealthy:   desc("wireguard", "peer_healthy", "1 when a peer's last handshake is at most --peer-unhealthy-after old (the rule of status and peer_health_changed).", "device", "peer"),
		wgInfo:      desc("wireguard", "peer_info", "Always 1: a peer's public key and current endpoint, by the short id the other series use.", "device", "peer", "public_key", "endpoint"),

		repaired:   desc("reconcile", "drift_repaired_total", "Drift repaired since the start: objects changed, missing or left over behind the daemon's back, put right by a check, by kind.", "kind"),
		attachFail: desc("", "attach_failures_total", "Container attaches that failed, by the step that failed.", "step"),
		natPresent: desc("nat", "table_present", "1 when the last NAT pass left the daemon's nftables table in place as the state asks (0 with NAT off)."),
		forwarded:  desc("dns", "forwarded_total", "DNS queries forwarded to the upstream resolvers."),
		probs:      desc("", "problems", "Problems status lists now (failing effects, listeners that cannot bind, the journal, the socket)."),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.ready, c.degraded, c.phase, c.bootDuration, c.bootStart, c.bootReplayed, c.bootSnapSeq,
		c.head, c.fileBytes, c.readOnly, c.conns, c.refused, c.evicted, c.closed, c.acceptErrs, c.expens,
		c.poolCap, c.poolUsed, c.services, c.attachments, c.records,
		c.wgPeers, c.wgRx, c.wgTx, c.wgHandshake, c.wgHealthy, c.wgInfo,
		c.repaired, c.attachFail, c.natPresent, c.forwarded, c.probs} {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	var s Sample
	c.sample(&s)
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	ctr := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	g(c.ready, b2f(s.Ready))
	g(c.degraded, b2f(s.Degraded))
	for _, p := range c.phases {
		g(c.phase, b2f(p == s.Phase), p)
	}
	if !s.Booted {
		return
	}
	g(c.bootDuration, s.Boot.Duration.Seconds())
	g(c.bootStart, s.Boot.StartLoad.Seconds())
	g(c.bootReplayed, float64(s.Boot.Replayed))
	g(c.bootSnapSeq, float64(s.Boot.SnapshotSeq))

	g(c.head, float64(s.JournalHead))
	if s.JournalBytes >= 0 {
		g(c.fileBytes, float64(s.JournalBytes))
	}
	g(c.readOnly, b2f(s.JournalReadOnly))

	if s.HasIPC {
		st := s.IPC
		g(c.conns, float64(st.Open))
		ctr(c.refused, float64(st.Refused), "limit")
		ctr(c.refused, float64(st.RefusedNoDescriptors), "descriptors")
		ctr(c.evicted, float64(st.Evicted))
		ctr(c.closed, float64(st.FrameTimeouts), "frame_timeout")
		ctr(c.closed, float64(st.QueueOverflows), "queue_overflow")
		ctr(c.closed, float64(st.WriteTimeouts), "write_timeout")
		ctr(c.acceptErrs, float64(st.AcceptErrors))
		g(c.expens, float64(st.ExpensiveRunning))
	}

	for _, p := range s.Pools {
		g(c.poolCap, p.Capacity, p.Name)
		g(c.poolUsed, float64(p.Used), p.Name)
	}
	g(c.services, float64(s.Services))
	g(c.attachments, float64(s.Attachments))
	g(c.records, float64(s.DNSRecords))

	for _, d := range s.Devices {
		g(c.wgPeers, float64(d.Peers), d.Name)
		for _, p := range d.Stats {
			id := PeerID(p.PublicKey)
			ctr(c.wgRx, float64(p.RxBytes), d.Name, id)
			ctr(c.wgTx, float64(p.TxBytes), d.Name, id)
			hs := 0.0
			if !p.LastHandshake.IsZero() {
				hs = float64(p.LastHandshake.UnixNano()) / 1e9
			}
			g(c.wgHandshake, hs, d.Name, id)
			g(c.wgHealthy, b2f(p.Healthy), d.Name, id)
			g(c.wgInfo, 1, d.Name, id, p.PublicKey, p.Endpoint)
		}
	}

	for kind, n := range s.Repaired {
		ctr(c.repaired, float64(n), kind)
	}
	for step, n := range s.AttachFailures {
		ctr(c.attachFail, float64(n), step)
	}
	if s.HasNAT {
		g(c.natPresent, b2f(s.NATPresent))
	}
	if s.HasDNS {
		ctr(c.forwarded, float64(s.DNSForwarded))
	}
	g(c.probs, float64(s.Problems))
}
