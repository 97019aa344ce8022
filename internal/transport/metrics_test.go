package transport

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestInstrument(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	fc := newFakeClock()
	// base takes 250ms of fake time per request and answers by path.
	base := RoundTripperFunc(func(req *http.Request) (*http.Response, error) {
		fc.Step(250 * time.Millisecond)
		h := http.Header{}
		switch {
		case strings.HasSuffix(req.URL.Path, "/fail"):
			return nil, errors.New("connection reset")
		case strings.HasPrefix(req.URL.Path, "/search/"):
			h.Set("X-RateLimit-Remaining", "29")
			h.Set("X-RateLimit-Resource", "search")
		default:
			h.Set("X-RateLimit-Remaining", "4990")
		}
		return &http.Response{StatusCode: 200, Header: h, Body: io.NopCloser(strings.NewReader(""))}, nil
	})
	rt := NewInstrument(base, m, fc)
	for _, u := range []string{
		"https://api.github.com/repos/a/b/issues/1/comments",
		"https://api.github.com/repos/c/d/issues/2/comments",
		"https://api.github.com/search/issues?q=secret",
		"https://api.github.com/repos/a/b/fail",
	} {
		resp, err := rt.RoundTrip(mustRequest(t, t.Context(), "GET", u, ""))
		if err == nil {
			readBody(t, resp)
		}
	}
	resp, err := rt.RoundTrip(mustRequest(t, t.Context(), "POST", "https://api.github.com/repos/a/b/statuses/0abc", "{}"))
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)

	want := `
# HELP lockstep_github_rate_limit_remaining Requests left in the current GitHub rate-limit window, as last reported by X-RateLimit-Remaining, by resource.
# TYPE lockstep_github_rate_limit_remaining gauge
lockstep_github_rate_limit_remaining{resource="core"} 4990
lockstep_github_rate_limit_remaining{resource="search"} 29
# HELP lockstep_github_requests_total Requests sent to the GitHub API, one per attempt, by method, route template and response status.
# TYPE lockstep_github_requests_total counter
lockstep_github_requests_total{method="GET",route="/repos/{owner}/{repo}/issues/{number}/comments",status="200"} 2
lockstep_github_requests_total{method="GET",route="/repos/{owner}/{repo}/{id}",status="error"} 1
lockstep_github_requests_total{method="GET",route="/search/issues",status="200"} 1
lockstep_github_requests_total{method="POST",route="/repos/{owner}/{repo}/statuses/{sha}",status="200"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"lockstep_github_requests_total", "lockstep_github_rate_limit_remaining"); err != nil {
		t.Error(err)
	}
}

// TestInstrumentDuration times requests on the fake clock.
func TestInstrumentDuration(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	fc := newFakeClock()
	base := RoundTripperFunc(func(req *http.Request) (*http.Response, error) {
		fc.Step(300 * time.Millisecond)
		return &http.Response{StatusCode: 304, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(""))}, nil
	})
	rt := NewInstrument(base, m, fc)
	for range 2 {
		resp, err := rt.RoundTrip(mustRequest(t, t.Context(), "GET", "https://api.github.com/repos/a/b/pulls/9", ""))
		if err != nil {
			t.Fatal(err)
		}
		readBody(t, resp)
	}
	const series = `{method="GET",route="/repos/{owner}/{repo}/pulls/{number}"`
	var want strings.Builder
	want.WriteString(`
# HELP lockstep_github_request_duration_seconds Time from sending a request to the GitHub API to receiving its response headers, by method and route template.
# TYPE lockstep_github_request_duration_seconds histogram
`)
	for _, b := range []struct {
		le    string
		count int
	}{{"0.005", 0}, {"0.01", 0}, {"0.025", 0}, {"0.05", 0}, {"0.1", 0}, {"0.25", 0}, {"0.5", 2}, {"1", 2}, {"2.5", 2}, {"5", 2}, {"10", 2}, {"+Inf", 2}} {
		fmt.Fprintf(&want, "lockstep_github_request_duration_seconds_bucket%s,le=%q} %d\n", series, b.le, b.count)
	}
	fmt.Fprintf(&want, "lockstep_github_request_duration_seconds_sum%s} 0.6\n", series)
	fmt.Fprintf(&want, "lockstep_github_request_duration_seconds_count%s} 2\n", series)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want.String()), "lockstep_github_request_duration_seconds"); err != nil {
		t.Error(err)
	}
	if got, want := testutil.ToFloat64(m.requests.WithLabelValues("GET", "/repos/{owner}/{repo}/pulls/{number}", "304")), 2.0; got != want {
		t.Errorf("requests with status 304: got %v, want %v", got, want)
	}
}

func TestNewMetricsRegistersOnce(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	if _, err := NewMetrics(reg); err != nil {
		t.Fatalf("first NewMetrics: %v", err)
	}
	if _, err := NewMetrics(reg); err == nil {
		t.Error("second NewMetrics on one registry: got nil error, want one")
	}
	if _, err := NewMetrics(nil); err != nil {
		t.Errorf("NewMetrics(nil): got %v, want nil", err)
	}
}
