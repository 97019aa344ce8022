package kube

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
)

// Metrics holds the Kubernetes executor's collectors:
//
//	lockstep_kube_pods{phase}                             lockstep's Pods, by phase
//	lockstep_kube_requests_total{verb,resource,code}      API requests
//	lockstep_kube_request_duration_seconds{verb,resource} their latencies
//	lockstep_kube_pod_create_delay_seconds                run created → Pod created
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	delay    prometheus.Histogram
	pods     *podCollector
}

// NewMetrics creates the collectors and registers them with reg (nil:
// none).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockstep_kube_requests_total",
			Help: "Requests sent to the Kubernetes API server, by verb, resource and response code (error: no response).",
		}, []string{"verb", "resource", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lockstep_kube_request_duration_seconds",
			Help:    "Time from sending a request to the Kubernetes API server to its response headers, by verb and resource.",
			Buckets: prometheus.DefBuckets,
		}, []string{"verb", "resource"}),
		delay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "lockstep_kube_pod_create_delay_seconds",
			Help:    "Time from a run's creation to its Pod's creation.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 16),
		}),
		pods: &podCollector{desc: prometheus.NewDesc("lockstep_kube_pods", "lockstep's Pods, by phase.", []string{"phase"}, nil)},
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.duration, m.delay, m.pods} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register Kubernetes executor metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *Metrics) created(d time.Duration) {
	if m != nil {
		m.delay.Observe(d.Seconds())
	}
}

// podCollector counts the Pods of the executor's informers at scrape
// time.
type podCollector struct {
	desc *prometheus.Desc
	e    *Executor
}

func (c *podCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *podCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[corev1.PodPhase]int{
		corev1.PodPending: 0, corev1.PodRunning: 0, corev1.PodSucceeded: 0, corev1.PodFailed: 0,
	}
	if c.e != nil {
		for _, p := range c.e.pods() {
			phase := p.Status.Phase
			if phase == "" {
				phase = corev1.PodPending
			}
			counts[phase]++
		}
	}
	for phase, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), string(phase))
	}
}

// Instrument is a RoundTripper that counts and times the requests it
// passes on. Like every RoundTripper of lockstep's (internal/transport),
// it never changes the caller's request and is safe for concurrent use.
type Instrument struct {
	next    http.RoundTripper
	metrics *Metrics
	clock   clock.PassiveClock
}

// NewInstrument returns an Instrument recording into m the requests sent
// through next, timed on clk (nil: the real clock).
func NewInstrument(next http.RoundTripper, m *Metrics, clk clock.PassiveClock) *Instrument {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Instrument{next: next, metrics: m, clock: clk}
}

// RoundTrip implements http.RoundTripper.
func (t *Instrument) RoundTrip(req *http.Request) (*http.Response, error) {
	verb, resource := Verb(req), Resource(req.URL.Path)
	start := t.clock.Now()
	resp, err := t.next.RoundTrip(req)
	t.metrics.duration.WithLabelValues(verb, resource).Observe(t.clock.Since(start).Seconds())
	code := "error"
	if resp != nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	t.metrics.requests.WithLabelValues(verb, resource, code).Inc()
	return resp, err
}

// Verb returns the Kubernetes verb of req: get, list, watch, create,
// update, patch, delete.
func Verb(req *http.Request) string {
	switch req.Method {
	case http.MethodPost:
		return "create"
	case http.MethodPut:
		return "update"
	case http.MethodPatch:
		return "patch"
	case http.MethodDelete:
		return "delete"
	}
	if w := req.URL.Query().Get("watch"); w == "true" || w == "1" {
		return "watch"
	}
	if _, named := parsePath(req.URL.Path); !named {
		return "list"
	}
	return "get"
}

// Resource returns the resource (and subresource) a request path names:
// "pods", "pods/log", "nodes"…; "other" for non-resource paths.
func Resource(path string) string {
	r, _ := parsePath(path)
	return r
}

// parsePath returns the resource of an API path and whether it names one
// object.
func parsePath(path string) (resource string, named bool) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	var rest []string
	switch {
	case len(parts) >= 3 && parts[0] == "api":
		rest = parts[2:]
	case len(parts) >= 4 && parts[0] == "apis":
		rest = parts[3:]
	default:
		return "other", true
	}
	if len(rest) >= 3 && rest[0] == "namespaces" {
		rest = rest[2:]
	}
	switch len(rest) {
	case 0:
		return "other", true
	case 1:
		return rest[0], false
	case 2:
		return rest[0], true
	default:
		return rest[0] + "/" + rest[2], true
	}
}
