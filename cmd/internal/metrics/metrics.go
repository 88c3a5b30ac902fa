// Package metrics is the daemon's Prometheus instrumentation: the metric
// families (docs/metrics.md lists every one), the hooks the pipeline calls
// on its hot paths (answered requests, journal commits, reconcile passes,
// DNS queries), a collector that reads the daemon's state at scrape time,
// and the HTTP server of /metrics, /healthz and /readyz.
//
// It does not import the daemon: the daemon hands it a Sample function
// that fills a Sample under the daemon's own read locks, and calls the
// Observe methods from its hooks. Hot-path metrics are resolved once per
// label value and cached, so an observation costs a map lookup on a
// read-only map and an atomic add or two.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every metric of the daemon.
const Namespace = "overlayd"

// Options configure New.
type Options struct {
	// Version, Commit, Protocol and GoVersion label overlayd_build_info.
	Version, Commit, GoVersion string
	Protocol                   int
	// Phases are every phase the daemon can be in, in order
	// (overlayd_phase has one series each).
	Phases []string
	// Sample fills s with the daemon's state at each scrape. It may be
	// called concurrently by several scrapes.
	Sample func(s *Sample)
}

// Metrics holds the registry and the hot-path metrics. Its Observe methods
// are safe for concurrent use; a nil *Metrics ignores every call.
type Metrics struct {
	reg *prometheus.Registry

	// IPC (ipc.go)
	requests    *prometheus.CounterVec
	reqDuration *prometheus.HistogramVec
	ops         cowMap[*opMetrics]
	opMu        sync.Mutex

	// journal (journal.go)
	events        *prometheus.CounterVec
	eventTypes    cowMap[prometheus.Counter]
	evMu          sync.Mutex
	commits       *prometheus.CounterVec
	commitsOK     prometheus.Counter
	commitsFailed prometheus.Counter
	commitTime    prometheus.Histogram
	snapshotTime  prometheus.Histogram

	// reconcile (effects.go)
	passes       *prometheus.CounterVec
	passDuration *prometheus.HistogramVec
	recs         cowMap[*passMetrics]
	recMu        sync.Mutex

	// DNS (dns.go)
	dns *dnsMeter
}

// New returns the metrics with their registry: the daemon's families, the
// Go runtime's and the process's.
func New(o Options) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "build_info",
		Help:        "Always 1; the labels name the build: release version, source commit, wire protocol version and Go version.",
		ConstLabels: prometheus.Labels{"version": o.Version, "commit": o.Commit, "protocol": strconv.Itoa(o.Protocol), "goversion": o.GoVersion},
	}, func() float64 { return 1 }))

	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "ipc", Name: "requests_total",
		Help: "Requests answered on the socket, by op and by the answer's result (ok, err, status, ...); op \"invalid\" for frames that did not decode to a request."},
		[]string{"op", "result"})
	m.reqDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: "ipc", Name: "request_duration_seconds",
		Help:    "Time from a request's dispatch to its answer being ready (decision, journal commit, effects), by op.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}},
		[]string{"op"})

	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "journal", Name: "events_total",
		Help: "Events made durable in the journal since the start, by type."}, []string{"type"})
	m.commits = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "journal", Name: "commits_total",
		Help: "Journal commits (one write transaction and fsync each, holding the events of every command that arrived meanwhile), by result: ok or error."},
		[]string{"result"})
	m.commitsOK, m.commitsFailed = m.commits.WithLabelValues("ok"), m.commits.WithLabelValues("error")
	m.commitTime = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: "journal", Name: "commit_duration_seconds",
		Help:    "Time of one journal commit: the write transaction and its fsync.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}})
	m.snapshotTime = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: "snapshot", Name: "save_duration_seconds",
		Help:    "Time to encode and store one projection snapshot.",
		Buckets: []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10}})

	m.passes = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "reconcile", Name: "passes_total",
		Help: "Reconcile passes finished, by reconciler and result (ok, error)."}, []string{"reconciler", "result"})
	m.passDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: "reconcile", Name: "pass_duration_seconds",
		Help:    "Time of one reconcile pass, by reconciler.",
		Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5, 10, 30, 120}}, []string{"reconciler"})

	m.dns = newDNSMeter()
	m.reg.MustRegister(m.requests, m.reqDuration, m.events, m.commits, m.commitTime, m.snapshotTime,
		m.passes, m.passDuration, m.dns.queries, m.dns.duration, m.dns.upstream)
	if o.Sample != nil {
		m.reg.MustRegister(newStateCollector(o))
	}
	return m
}

// Registry is the registry the families are in (tests, extra collectors).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text format (or
// OpenMetrics / protobuf when the scraper asks for it), at most two
// scrapes at once, each bounded to 10 s.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{MaxRequestsInFlight: 2, Timeout: 10 * time.Second})
}

// SnapshotSaved records the time one snapshot took.
func (m *Metrics) SnapshotSaved(took time.Duration) {
	if m == nil {
		return
	}
	m.snapshotTime.Observe(took.Seconds())
}

// cowMap is a copy-on-write map for label values seen on a hot path: a
// lookup is an atomic load and a map read, without locks; adding a key
// (rare: once per op, event type, ...) copies the map under the owner's
// mutex.
type cowMap[V any] struct{ p atomic.Pointer[map[string]V] }

func (c *cowMap[V]) get(k string) (V, bool) {
	if m := c.p.Load(); m != nil {
		v, ok := (*m)[k]
		return v, ok
	}
	var zero V
	return zero, false
}

// add stores k → v; the caller holds the owner's mutex.
func (c *cowMap[V]) add(k string, v V) {
	old := c.p.Load()
	n := make(map[string]V, 1)
	if old != nil {
		n = make(map[string]V, len(*old)+1)
		for kk, vv := range *old {
			n[kk] = vv
		}
	}
	n[k] = v
	c.p.Store(&n)
}

// load returns k's value, making it with mk under mu when it is new.
func (c *cowMap[V]) load(mu *sync.Mutex, k string, mk func() V) V {
	if v, ok := c.get(k); ok {
		return v
	}
	mu.Lock()
	defer mu.Unlock()
	if v, ok := c.get(k); ok {
		return v
	}
	v := mk()
	c.add(k, v)
	return v
}
