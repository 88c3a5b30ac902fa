package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/zlayer/overlayd/ipc"
)

// opMetrics are one op's children, resolved once.
type opMetrics struct {
	op       string
	duration prometheus.Observer
	results  cowMap[prometheus.Counter]
}

// ObserveAnswer counts one answered request (the daemon's ipc.Answered
// hook): requests by op and result, and its duration by op. It never
// blocks.
func (m *Metrics) ObserveAnswer(a ipc.Answered) {
	if m == nil {
		return
	}
	op := a.Op()
	if op == "" {
		op = "invalid"
	}
	om := m.ops.load(&m.opMu, op, func() *opMetrics {
		return &opMetrics{op: op, duration: m.reqDuration.WithLabelValues(op)}
	})
	result := "none"
	if a.Response != nil {
		result = a.Response.Result()
	}
	c := om.results.load(&m.opMu, result, func() prometheus.Counter { return m.requests.WithLabelValues(om.op, result) })
	c.Inc()
	om.duration.Observe(a.Took.Seconds())
}
