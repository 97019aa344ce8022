package periodic

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// The outcomes of due times, as counted by lockstep_periodic_fires_total.
const (
	outcomeRun     = "run"     // a run was created
	outcomeFailed  = "failed"  // a run was created failed (on_stale fail, no build)
	outcomeSkipped = "skipped" // no run: concurrency policy, stale build, no build
	outcomeMissed  = "missed"  // passed during downtime, folded into one catch-up fire
)

// metrics are the Scheduler's Prometheus metrics.
type metrics struct {
	fires    *prometheus.CounterVec
	lateness prometheus.Histogram
}

func newMetrics() *metrics {
	return &metrics{
		fires: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockstep_periodic_fires_total",
			Help: "Due times of periodic jobs handled, by outcome: run, failed, skipped or missed.",
		}, []string{"outcome"}),
		lateness: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "lockstep_periodic_fire_lateness_seconds",
			Help:    "How long after its due time a periodic run was created.",
			Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300},
		}),
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.fires, m.lateness} {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("register periodic metrics: %w", err)
		}
	}
	return nil
}
