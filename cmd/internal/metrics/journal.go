package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/zlayer/overlayd/journal"
)

// ObserveCommit counts one journal commit (journal.CommitObserver): its
// result, its duration and the events it made durable by type.
func (m *Metrics) ObserveCommit(c journal.CommitInfo) {
	if m == nil {
		return
	}
	if c.Err != nil {
		m.commitsFailed.Inc()
		if c.Took > 0 {
			m.commitTime.Observe(c.Took.Seconds())
		}
		return
	}
	m.commitsOK.Inc()
	m.commitTime.Observe(c.Took.Seconds())
	// Batches hold runs of one type (a busy client repeats its op): one
	// lookup per run.
	var last string
	var ctr prometheus.Counter
	n := 0
	for _, t := range c.Types {
		if t != last || ctr == nil {
			if n > 0 {
				ctr.Add(float64(n))
			}
			last, n = t, 0
			ctr = m.eventTypes.load(&m.evMu, t, func() prometheus.Counter { return m.events.WithLabelValues(t) })
		}
		n++
	}
	if n > 0 {
		ctr.Add(float64(n))
	}
}
