package daemon

import (
	"net/netip"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/zlayer/overlayd/cmd/internal/metrics"
	"github.com/zlayer/overlayd/cmd/internal/version"
	"github.com/zlayer/overlayd/effects/dns"
	"github.com/zlayer/overlayd/effects/wireguard"
	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/journal"
	"github.com/zlayer/overlayd/projections"
)

// daemonMetrics is the daemon's side of --metrics-listen: the metrics, the
// HTTP server and what a scrape reads of the daemon. Off (nil) without
// the flag: then no hook is installed and nothing is counted.
type daemonMetrics struct {
	m    *metrics.Metrics
	http *metrics.Server
	ipam ipamCache
}

// startMetrics starts the metrics and their HTTP server, at the very
// start of Open: /healthz answers and /readyz says "starting" or
// "replaying" while a long boot goes on. A listener that cannot bind is
// retried and listed as the problem "metrics"; the daemon goes on.
func (d *Daemon) startMetrics() {
	if d.cfg.MetricsListen == "" {
		return
	}
	v, c := version.Get()
	var phases []string
	for p := PhaseStarting; p <= PhaseStopped; p++ {
		phases = append(phases, p.String())
	}
	dm := &daemonMetrics{}
	dm.m = metrics.New(metrics.Options{Version: v, Commit: c, Protocol: version.Protocol, GoVersion: runtime.Version(),
		Phases: phases, Sample: d.sampleMetrics})
	d.metrics = dm
	d.onAnswer(dm.m.ObserveAnswer)
	dm.http = metrics.StartServer(metrics.ServerOptions{Addr: d.cfg.MetricsListen, Metrics: dm.m.Handler(), Ready: d.Readiness, Log: d.log,
		Problem: func(err error) { d.probs.Set("metrics", err) }})
}

// meterPipeline installs the hooks of the journal and the effects, once
// both exist and before the runner starts (Open).
func (d *Daemon) meterPipeline() {
	if d.metrics == nil {
		return
	}
	m := d.metrics.m
	if co, ok := d.store.(journal.CommitObserver); ok {
		co.ObserveCommits(m.ObserveCommit)
	}
	d.runner.OnPass(m.ObservePass)
	for _, r := range d.runner.Reconcilers() {
		if dr, ok := r.(*dns.Reconciler); ok {
			dr.Server().SetMeter(m.DNS())
		}
	}
}

// snapshotSaved records a snapshot's time.
func (dm *daemonMetrics) snapshotSaved(took time.Duration) {
	if dm != nil {
		dm.m.SnapshotSaved(took)
	}
}

// stopMetrics stops the HTTP server (the end of shutdown, or a failed
// Open).
func (d *Daemon) stopMetrics() {
	if d.metrics == nil {
		return
	}
	d.metrics.http.Close()
	d.probs.Set("metrics", nil)
}

// MetricsAddr is where the metrics server listens ("" when it is off or
// has not bound yet): tests, and --metrics-listen with port 0.
func (d *Daemon) MetricsAddr() string {
	if d.metrics == nil {
		return ""
	}
	if a := d.metrics.http.Addr(); a != nil {
		return a.String()
	}
	return ""
}

// sampleMetrics reads the daemon for one scrape. The state, the store and
// the runner exist from the reconciling phase on, the socket server from
// serving on (each set before its phase, under the phase lock Phase
// takes); after the stop nothing but the phase is read.
func (d *Daemon) sampleMetrics(s *metrics.Sample) {
	p, _, _ := d.Phase()
	s.Phase = p.String()
	s.Ready, s.Reasons = d.Readiness()
	s.Degraded = p == PhaseServing && !s.Ready
	if p < PhaseReconciling || p >= PhaseStopped {
		return
	}
	s.Booted = true
	s.Boot = metrics.Boot{Duration: d.boot.Duration, StartLoad: d.boot.StartLoad, Replayed: d.boot.Replayed, SnapshotSeq: d.boot.SnapshotSeq}
	s.JournalHead, _ = d.store.Head()
	s.JournalReadOnly = !d.store.Health().OK()
	s.JournalBytes = -1
	if ps, ok := d.store.(interface{ Path() string }); ok {
		if fi, err := os.Stat(ps.Path()); err == nil {
			s.JournalBytes = fi.Size()
		}
	}
	if p >= PhaseServing && d.server != nil {
		s.IPC, s.HasIPC = d.server.Stats(), true
	}
	type dev struct {
		name  string
		peers int
	}
	var devs []dev
	d.decided.Read(func(st *projections.State) {
		s.Pools = d.metrics.ipam.pools(st)
		s.Services, s.Attachments, s.DNSRecords = len(st.Services), len(st.Attachments), len(st.DNS)
		for _, c := range wireguard.Desired(st) {
			devs = append(devs, dev{c.Name, len(c.Peers)})
		}
	})
	now := time.Now()
	for _, dv := range devs {
		md := metrics.Device{Name: dv.name, Peers: dv.peers}
		if d.wg != nil {
			if ds, err := d.wg.Stats(dv.name); err == nil {
				md.Running = true
				for _, ps := range ds.Peers {
					md.Stats = append(md.Stats, metrics.PeerStats{PublicKey: ps.PublicKey, Endpoint: ps.Endpoint,
						RxBytes: ps.RxBytes, TxBytes: ps.TxBytes, LastHandshake: ps.LastHandshake,
						Healthy: peerHealth(now, ps.LastHandshake, d.cfg.PeerUnhealthyAfter) == ipc.PeerHealthy})
				}
			}
		}
		s.Devices = append(s.Devices, md)
	}
	s.Repaired = d.runner.Repaired()
	for _, r := range d.runner.Reconcilers() {
		switch r := r.(type) {
		case interface{ AttachFailures() map[string]uint64 }:
			s.AttachFailures = r.AttachFailures()
		case interface{ TablePresent() bool }:
			s.HasNAT, s.NATPresent = true, r.TablePresent()
		case *dns.Reconciler:
			s.HasDNS, s.DNSForwarded = true, r.Server().Forwarded.Load()
		}
	}
	s.Problems = len(d.problems())
}

// ipamCache keeps the used addresses per pool of the last state it
// counted: counting walks every owned address (tens of ms at 100,000
// addresses would hold the state's read lock that long at every scrape),
// so a scrape of an unchanged state reuses the count.
type ipamCache struct {
	mu   sync.Mutex
	st   *projections.State
	seq  uint64
	used map[string]int
}

// pools lists the pools of st with their capacity and use; the caller
// holds st's read lock.
func (c *ipamCache) pools(st *projections.State) []metrics.Pool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st != st || c.seq != st.Seq || c.used == nil {
		c.used = map[string]int{}
		for _, o := range st.IPAM.Owners {
			c.used[o.Pool]++
		}
		c.st, c.seq = st, st.Seq
	}
	var out []metrics.Pool
	add := func(name string, p netip.Prefix) {
		out = append(out, metrics.Pool{Name: name, Capacity: poolCapacity(p), Used: c.used[name]})
	}
	if p, ok := st.PoolPrefix("slice"); ok {
		add("slice", p)
	}
	for name := range st.Services {
		pool := "service:" + name
		if p, ok := st.PoolPrefix(pool); ok {
			add(pool, p)
		}
	}
	return out
}

// poolCapacity is the number of usable addresses of p, as IPAM counts
// them: all but the network address, and the broadcast address in IPv4.
func poolCapacity(p netip.Prefix) float64 {
	host := p.Addr().BitLen() - p.Bits()
	n := 1.0
	for range host {
		n *= 2
	}
	if p.Addr().Is4() {
		return max(n-2, 0)
	}
	return n - 1
}
