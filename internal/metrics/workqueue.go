package metrics

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/util/workqueue"
)

// queueMetrics are the workqueue metrics of every controller, labelled by
// the controller's name (controller.Options.Name).
type queueMetrics struct {
	depth          *prometheus.GaugeVec
	adds           *prometheus.CounterVec
	latency        *prometheus.HistogramVec
	workDuration   *prometheus.HistogramVec
	unfinished     *prometheus.GaugeVec
	longestRunning *prometheus.GaugeVec
	retries        *prometheus.CounterVec
}

func newQueueMetrics() queueMetrics {
	labels := []string{"controller"}
	buckets := prometheus.ExponentialBuckets(0.001, 4, 10) // 1 ms to about 4.4 min
	return queueMetrics{
		depth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lockstep_workqueue_depth",
			Help: "Keys waiting in a controller's workqueue.",
		}, labels),
		adds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockstep_workqueue_adds_total",
			Help: "Keys added to a controller's workqueue.",
		}, labels),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lockstep_workqueue_queue_duration_seconds",
			Help:    "Time a key waits in a controller's workqueue before a worker takes it.",
			Buckets: buckets,
		}, labels),
		workDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lockstep_workqueue_work_duration_seconds",
			Help:    "Time a controller takes to reconcile one key.",
			Buckets: buckets,
		}, labels),
		unfinished: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lockstep_workqueue_unfinished_work_seconds",
			Help: "Seconds of work under way that has not finished, summed over a controller's workers; a value that keeps growing means a stuck worker.",
		}, labels),
		longestRunning: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lockstep_workqueue_longest_running_processor_seconds",
			Help: "How long a controller's longest-running reconcile has been going on.",
		}, labels),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockstep_workqueue_retries_total",
			Help: "Keys a controller's workqueue re-queued with backoff after a failed reconcile.",
		}, labels),
	}
}

func (q queueMetrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{q.depth, q.adds, q.latency, q.workDuration, q.unfinished, q.longestRunning, q.retries} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register workqueue metrics: %w", err)
		}
	}
	return nil
}

var _ workqueue.MetricsProvider = queueMetrics{}

// WorkqueueProvider returns the provider for controller.Options
// .MetricsProvider. The controller's Name labels its series.
func (m *Metrics) WorkqueueProvider() workqueue.MetricsProvider { return m.queues }

// NewDepthMetric implements workqueue.MetricsProvider.
func (q queueMetrics) NewDepthMetric(name string) workqueue.GaugeMetric {
	return q.depth.WithLabelValues(name)
}

// NewAddsMetric implements workqueue.MetricsProvider.
func (q queueMetrics) NewAddsMetric(name string) workqueue.CounterMetric {
	return q.adds.WithLabelValues(name)
}

// NewLatencyMetric implements workqueue.MetricsProvider.
func (q queueMetrics) NewLatencyMetric(name string) workqueue.HistogramMetric {
	return q.latency.WithLabelValues(name)
}

// NewWorkDurationMetric implements workqueue.MetricsProvider.
func (q queueMetrics) NewWorkDurationMetric(name string) workqueue.HistogramMetric {
	return q.workDuration.WithLabelValues(name)
}

// NewUnfinishedWorkSecondsMetric implements workqueue.MetricsProvider.
func (q queueMetrics) NewUnfinishedWorkSecondsMetric(name string) workqueue.SettableGaugeMetric {
	return q.unfinished.WithLabelValues(name)
}

// NewLongestRunningProcessorSecondsMetric implements
// workqueue.MetricsProvider.
func (q queueMetrics) NewLongestRunningProcessorSecondsMetric(name string) workqueue.SettableGaugeMetric {
	return q.longestRunning.WithLabelValues(name)
}

// NewRetriesMetric implements workqueue.MetricsProvider.
func (q queueMetrics) NewRetriesMetric(name string) workqueue.CounterMetric {
	return q.retries.WithLabelValues(name)
}
