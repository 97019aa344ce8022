package builds

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/lockstep-ci/lockstep/internal/store"
)

// markerMetrics exports, per configured marker, its age (computed when
// scraped, so it grows between evaluations), whether it is stale, and how
// many newer builds exist.
type markerMetrics struct {
	clock clock.PassiveClock
	age   *prometheus.Desc
	stale *prometheus.Desc
	newer *prometheus.Desc

	// mu guards markers.
	mu      sync.Mutex
	markers map[string]markerSample
}

// markerSample is what the gauges of one marker are computed from.
type markerSample struct {
	since time.Time // when the marker last moved, or was created
	stale bool
	newer int
}

func newMarkerMetrics(c clock.PassiveClock) *markerMetrics {
	return &markerMetrics{
		clock: c,
		age: prometheus.NewDesc("lockstep_marker_age_seconds",
			"How long the marker has named the same build (since it was created, if it names none).",
			[]string{"marker"}, nil),
		stale: prometheus.NewDesc("lockstep_marker_stale",
			"1 when the marker is stale: older than its max_age, or its gate keeps failing while newer builds exist.",
			[]string{"marker"}, nil),
		newer: prometheus.NewDesc("lockstep_marker_newer_builds",
			"How many builds of the marker's branch are newer than the build it names.",
			[]string{"marker"}, nil),
		markers: map[string]markerSample{},
	}
}

// set records the state of marker name as m, evaluated stale or not.
func (mm *markerMetrics) set(name string, m *store.Marker, stale bool) {
	since := m.CreatedAt
	if m.MovedAt != nil {
		since = *m.MovedAt
	}
	mm.mu.Lock()
	defer mm.mu.Unlock()
	mm.markers[name] = markerSample{since: since, stale: stale, newer: m.Status.NewerBuilds}
}

// forget stops exporting marker name.
func (mm *markerMetrics) forget(name string) {
	mm.mu.Lock()
	defer mm.mu.Unlock()
	delete(mm.markers, name)
}

// Describe implements prometheus.Collector.
func (mm *markerMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- mm.age
	ch <- mm.stale
	ch <- mm.newer
}

// Collect implements prometheus.Collector.
func (mm *markerMetrics) Collect(ch chan<- prometheus.Metric) {
	now := mm.clock.Now()
	mm.mu.Lock()
	defer mm.mu.Unlock()
	for name, s := range mm.markers {
		stale := 0.0
		if s.stale {
			stale = 1
		}
		ch <- prometheus.MustNewConstMetric(mm.age, prometheus.GaugeValue, now.Sub(s.since).Seconds(), name)
		ch <- prometheus.MustNewConstMetric(mm.stale, prometheus.GaugeValue, stale, name)
		ch <- prometheus.MustNewConstMetric(mm.newer, prometheus.GaugeValue, float64(s.newer), name)
	}
}
