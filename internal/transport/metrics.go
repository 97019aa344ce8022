package transport

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
)

// Metrics holds the collectors Instrument records into. One Metrics may be
// shared by several chains (the main one and a GitHub App's own).
type Metrics struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	remaining *prometheus.GaugeVec
}

// NewMetrics creates lockstep's GitHub client metrics and registers them
// with reg; a nil reg registers nothing. The metrics are
//
//	lockstep_github_requests_total{method,route,status}
//	lockstep_github_request_duration_seconds{method,route}
//	lockstep_github_rate_limit_remaining{resource}
//
// where route is Route of the request path and status is the response's
// code, or "error" when no response came.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockstep_github_requests_total",
			Help: "Requests sent to the GitHub API, one per attempt, by method, route template and response status.",
		}, []string{"method", "route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lockstep_github_request_duration_seconds",
			Help:    "Time from sending a request to the GitHub API to receiving its response headers, by method and route template.",
			Buckets: prometheus.DefBuckets,
		}, []string{"method", "route"}),
		remaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lockstep_github_rate_limit_remaining",
			Help: "Requests left in the current GitHub rate-limit window, as last reported by X-RateLimit-Remaining, by resource.",
		}, []string{"resource"}),
	}
	if reg == nil {
		return m, nil
	}
	var done []prometheus.Collector
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.remaining} {
		if err := reg.Register(c); err != nil {
			for _, d := range done {
				reg.Unregister(d)
			}
			return nil, fmt.Errorf("register GitHub client metrics: %w", err)
		}
		done = append(done, c)
	}
	return m, nil
}

// Instrument is a RoundTripper that records every request it passes on in
// a Metrics. It is safe for concurrent use.
type Instrument struct {
	next    http.RoundTripper
	metrics *Metrics
	clock   clock.PassiveClock
}

var _ http.RoundTripper = (*Instrument)(nil)

// NewInstrument returns an Instrument recording requests sent through next
// in m, timed on clk (nil: the real clock).
func NewInstrument(next http.RoundTripper, m *Metrics, clk clock.PassiveClock) *Instrument {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Instrument{next: next, metrics: m, clock: clk}
}

// RoundTrip sends req through the next RoundTripper and records it.
func (t *Instrument) RoundTrip(req *http.Request) (*http.Response, error) {
	start := t.clock.Now()
	resp, err := t.next.RoundTrip(req)
	method, route := methodLabel(req.Method), Route(req.URL.EscapedPath())
	status := "error"
	if err == nil {
		status = strconv.Itoa(resp.StatusCode)
	}
	t.metrics.requests.WithLabelValues(method, route, status).Inc()
	t.metrics.duration.WithLabelValues(method, route).Observe(t.clock.Since(start).Seconds())
	if err == nil {
		if rl, ok := parseRateLimit(resp.Header, resourceOf(req.URL.EscapedPath())); ok {
			t.metrics.remaining.WithLabelValues(rl.resource).Set(float64(rl.remaining))
		}
	}
	return resp, err
}

// methodLabel bounds the method label to the standard methods.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	case "":
		return http.MethodGet
	}
	return "OTHER"
}

// rateLimitHeaders is what a response says about its rate-limit window.
type rateLimitHeaders struct {
	resource  string
	remaining int
	// reset is the window's end in Unix seconds; zero when absent or
	// malformed.
	reset int64
}

// parseRateLimit reads X-RateLimit-Remaining, X-RateLimit-Reset and
// X-RateLimit-Resource, taking resource when the last is absent. It
// reports false when Remaining is absent or malformed; a malformed Reset
// or Resource is dropped.
func parseRateLimit(h http.Header, resource string) (rateLimitHeaders, bool) {
	remaining, err := strconv.Atoi(strings.TrimSpace(h.Get("X-RateLimit-Remaining")))
	if err != nil || remaining < 0 {
		return rateLimitHeaders{}, false
	}
	rl := rateLimitHeaders{resource: resource, remaining: remaining}
	if r := h.Get("X-RateLimit-Resource"); validResource(r) {
		rl.resource = r
	}
	if reset, err := strconv.ParseInt(strings.TrimSpace(h.Get("X-RateLimit-Reset")), 10, 64); err == nil &&
		reset > 0 && reset < maxUnixReset {
		rl.reset = reset
	}
	return rl, true
}

// maxUnixReset bounds X-RateLimit-Reset (the year 2286), so that an absurd
// value cannot overflow a time computation.
const maxUnixReset = 1e10

// validResource reports whether r looks like a GitHub rate-limit resource
// name (core, search, graphql, code_search…), which keeps the resource
// label bounded whatever a server sends.
func validResource(r string) bool {
	if r == "" || len(r) > 40 {
		return false
	}
	for i := 0; i < len(r); i++ {
		if c := r[i]; (c < 'a' || c > 'z') && c != '_' {
			return false
		}
	}
	return true
}
