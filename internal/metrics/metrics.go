// Package metrics builds lockstep's Prometheus registry and the metrics
// that do not belong to one component: runs created by cause, runs by
// state, run durations per job and webhook deliveries by outcome (all
// observed from the store's change feeds), workqueue and reconcile-error
// metrics per controller, and store conflicts retried. Components that
// own their metrics register them on Registerer: the GitHub client's
// (transport.NewMetrics) and the builds controller's marker gauges.
//
// Every name starts with lockstep_; counters end in _total and durations
// in _seconds.
package metrics

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/utils/clock"
)

// Options configure a Metrics. Every field is optional.
type Options struct {
	// Runs is the run change feed Run observes for the run metrics; nil
	// leaves them out.
	Runs RunFeed
	// Deliveries is the delivery change feed Run observes for
	// lockstep_webhook_deliveries_total; nil leaves it out.
	Deliveries DeliveryFeed
	// Clock times the retries of a failed feed; default the real clock.
	Clock  clock.WithTicker
	Logger *slog.Logger
	// RetryDelay is how long Run waits before it watches a feed again
	// after the feed failed; default five seconds.
	RetryDelay time.Duration
}

// Metrics is lockstep's registry and the collectors it owns. Create it
// with New; it is safe for concurrent use. Call Run, once, to observe the
// store's change feeds.
type Metrics struct {
	opts Options
	log  *slog.Logger
	reg  *prometheus.Registry

	runsCreated     *prometheus.CounterVec
	runDuration     *prometheus.HistogramVec
	deliveries      *prometheus.CounterVec
	reconcileErrors *prometheus.CounterVec
	conflicts       *prometheus.CounterVec
	feedErrors      *prometheus.CounterVec
	active          *activeRuns
	queues          queueMetrics
}

// runDurationBuckets returns the buckets of
// lockstep_run_duration_seconds: from ten seconds to four hours, as CI
// jobs go.
func runDurationBuckets() []float64 {
	return []float64{10, 30, 60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200, 14400}
}

// New returns a Metrics whose registry holds the Go runtime and process
// collectors and every lockstep metric this package defines.
func New(opts Options) (*Metrics, error) {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = 5 * time.Second
	}
	m := &Metrics{
		opts: opts,
		log:  opts.Logger.With("component", "metrics"),
		reg:  prometheus.NewRegistry(),
		runsCreated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockstep_runs_created_total",
			Help: "Runs created since lockstep started, by cause (event, command, cron, rerun, resync, cli).",
		}, []string{"cause"}),
		runDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lockstep_run_duration_seconds",
			Help:    "Time from a run's start on an executor to its end, for runs that ended since lockstep started, by repository, job and final state.",
			Buckets: runDurationBuckets(),
		}, []string{"repo", "job", "state"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockstep_webhook_deliveries_total",
			Help: "Webhook deliveries processed since lockstep started, by event and outcome (created, existing, aborted, ignored, stale, failed).",
		}, []string{"event", "outcome"}),
		reconcileErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockstep_controller_reconcile_errors_total",
			Help: "Reconciles that returned an error, by controller.",
		}, []string{"controller"}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockstep_store_conflicts_retried_total",
			Help: "Store writes that failed with a conflict (a stale resource version) and were re-read and retried, by writer.",
		}, []string{"writer"}),
		feedErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockstep_metrics_feed_errors_total",
			Help: "Failures of the store change feeds the metrics are computed from, by feed (runs, deliveries); the feed is watched again after each.",
		}, []string{"feed"}),
		active: newActiveRuns(),
		queues: newQueueMetrics(),
	}
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.runsCreated, m.runDuration, m.deliveries, m.reconcileErrors, m.conflicts, m.feedErrors,
		m.active,
	} {
		if err := m.reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	if err := m.queues.register(m.reg); err != nil {
		return nil, err
	}
	return m, nil
}

// Registerer is where other components register their own metrics, such
// as transport.NewMetrics for the GitHub client.
func (m *Metrics) Registerer() prometheus.Registerer { return m.reg }

// Gatherer is what /metrics exposes.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
		Registry:          m.reg,
		EnableOpenMetrics: true,
	})
}

// ReconcileErrors returns a function for controller.Options.OnError that
// counts the errors of the controller named controller.
func (m *Metrics) ReconcileErrors(controller string) func(error) {
	c := m.reconcileErrors.WithLabelValues(controller)
	return func(error) { c.Inc() }
}

// ConflictRetried counts one write by writer (a controller or component
// name) that failed with store.ErrConflict and is retried. Call it from
// the function given to store.RetryOnConflict when the previous attempt
// returned ErrConflict.
func (m *Metrics) ConflictRetried(writer string) {
	m.conflicts.WithLabelValues(writer).Inc()
}
