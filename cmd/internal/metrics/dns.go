package metrics

import (
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/zlayer/overlayd/effects/dns"
)

// The label values of DNS queries: a fixed set, so that a client sending
// every type there is cannot grow the series without bound.
var (
	dnsQtypes = []uint16{0, mdns.TypeA, mdns.TypeAAAA, mdns.TypePTR, mdns.TypeSOA, mdns.TypeANY, mdns.TypeSRV,
		mdns.TypeTXT, mdns.TypeMX, mdns.TypeCNAME, mdns.TypeNS, mdns.TypeHTTPS, mdns.TypeSVCB}
	dnsRcodes = []int{mdns.RcodeSuccess, mdns.RcodeFormatError, mdns.RcodeServerFailure, mdns.RcodeNameError,
		mdns.RcodeNotImplemented, mdns.RcodeRefused, mdns.RcodeBadVers}
)

const (
	nQtypes = 14 // dnsQtypes and "other"
	nRcodes = 8  // dnsRcodes and "other"
)

func qtypeIndex(t uint16) int {
	for i, q := range dnsQtypes {
		if q == t {
			return i
		}
	}
	return nQtypes - 1
}

func qtypeName(i int) string {
	switch {
	case i == 0:
		return "none"
	case i >= len(dnsQtypes):
		return "other"
	}
	return mdns.TypeToString[dnsQtypes[i]]
}

func rcodeIndex(rc int) int {
	for i, r := range dnsRcodes {
		if r == rc {
			return i
		}
	}
	return nRcodes - 1
}

func rcodeName(i int) string {
	if i >= len(dnsRcodes) {
		return "other"
	}
	return mdns.RcodeToString[dnsRcodes[i]]
}

type counterBox struct{ c prometheus.Counter }

// dnsMeter implements dns.Meter. Each (qtype, proto, rcode) counter is
// resolved the first time it is used and kept in a fixed array, so a
// query costs an atomic load, an atomic add and a histogram observation.
type dnsMeter struct {
	queries  *prometheus.CounterVec
	duration *prometheus.HistogramVec
	upstream *prometheus.CounterVec
	byProto  [2]prometheus.Observer // udp, tcp
	cells    [nQtypes * 2 * nRcodes]atomic.Pointer[counterBox]
	mu       sync.Mutex
	ups      cowMap[prometheus.Counter]
}

var _ dns.Meter = (*dnsMeter)(nil)

func newDNSMeter() *dnsMeter {
	d := &dnsMeter{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "dns", Name: "queries_total",
			Help: "DNS queries answered, by question type (none: no single question; other: a type outside the usual set), protocol (udp, tcp) and response code."},
			[]string{"qtype", "proto", "rcode"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: "dns", Name: "query_duration_seconds",
			Help:    "Time from reading a DNS query to its answer being ready (forwarded queries included), by protocol.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}},
			[]string{"proto"}),
		upstream: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "dns", Name: "upstream_errors_total",
			Help: "Exchanges with an upstream resolver that failed (timeout, refused, unreadable), by upstream."}, []string{"upstream"}),
	}
	d.byProto[0], d.byProto[1] = d.duration.WithLabelValues("udp"), d.duration.WithLabelValues("tcp")
	return d
}

func protoName(tcp int) string {
	if tcp == 1 {
		return "tcp"
	}
	return "udp"
}

func (d *dnsMeter) Query(qtype uint16, tcp bool, rcode int, took time.Duration) {
	p := 0
	if tcp {
		p = 1
	}
	qi, ri := qtypeIndex(qtype), rcodeIndex(rcode)
	cell := &d.cells[(qi*2+p)*nRcodes+ri]
	b := cell.Load()
	if b == nil {
		b = &counterBox{d.queries.WithLabelValues(qtypeName(qi), protoName(p), rcodeName(ri))}
		cell.CompareAndSwap(nil, b) // a racing twin resolves the same child
	}
	b.c.Inc()
	d.byProto[p].Observe(took.Seconds())
}

func (d *dnsMeter) UpstreamFailed(upstream string) {
	d.ups.load(&d.mu, upstream, func() prometheus.Counter { return d.upstream.WithLabelValues(upstream) }).Inc()
}

// DNS is the meter to hand the DNS server (dns.Server.SetMeter).
func (m *Metrics) DNS() dns.Meter {
	if m == nil {
		return nil
	}
	return m.dns
}
