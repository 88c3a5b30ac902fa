package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/zlayer/overlayd/effects"
)

// passMetrics are one reconciler's children, resolved once.
type passMetrics struct {
	ok, failed prometheus.Counter
	duration   prometheus.Observer
}

// ObservePass counts one reconcile pass (effects.Runner.OnPass).
func (m *Metrics) ObservePass(p effects.Pass) {
	if m == nil {
		return
	}
	pm := m.recs.load(&m.recMu, p.Reconciler, func() *passMetrics {
		return &passMetrics{ok: m.passes.WithLabelValues(p.Reconciler, "ok"), failed: m.passes.WithLabelValues(p.Reconciler, "error"),
			duration: m.passDuration.WithLabelValues(p.Reconciler)}
	})
	if p.Err != nil {
		pm.failed.Inc()
	} else {
		pm.ok.Inc()
	}
	pm.duration.Observe(p.Took.Seconds())
}
