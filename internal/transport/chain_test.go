package transport

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	testclock "k8s.io/utils/clock/testing"
)

// requestSnapshot is everything of a request a RoundTripper must leave
// alone.
type requestSnapshot struct {
	Method, URL, Host, RawQuery string
	Header                      http.Header
	ContentLength               int64
	Body                        string // what GetBody yields
}

func snapshot(t *testing.T, req *http.Request) requestSnapshot {
	t.Helper()
	s := requestSnapshot{Method: req.Method, URL: req.URL.String(), Host: req.Host, RawQuery: req.URL.RawQuery,
		Header: req.Header.Clone(), ContentLength: req.ContentLength}
	if req.GetBody != nil {
		b, err := req.GetBody()
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(b)
		s.Body = string(data)
	}
	return s
}

type ctxKey struct{}

// TestRoundTrippersLeaveRequestUnchanged sends a request through every
// RoundTripper, on paths where each changes what it sends (a token, a
// conditional header, a resend, a retry), and checks the caller's request
// is as it was.
func TestRoundTrippersLeaveRequestUnchanged(t *testing.T) {
	t.Parallel()
	etag := map[string]string{"ETag": `"e"`}
	tests := []struct {
		name   string
		method string
		steps  []step
		// prime sends the request once first, to fill the cache.
		prime bool
		rt    func(base http.RoundTripper, url string, fc *testclock.FakeClock) http.RoundTripper
		// sent checks what the server received last.
		sent func(h http.Header) error
	}{
		{
			name: "Auth", method: "PUT", steps: []step{{status: 200}},
			rt: func(base http.RoundTripper, url string, _ *testclock.FakeClock) http.RoundTripper {
				return NewAuth(base, StaticToken("tok"), url)
			},
			sent: wantHeader("Authorization", "Bearer tok"),
		},
		{
			name: "Cache", method: "GET", steps: []step{{status: 200, header: etag, body: "x"}, {status: 304, header: etag}},
			prime: true,
			rt: func(base http.RoundTripper, _ string, _ *testclock.FakeClock) http.RoundTripper {
				return NewCache(base, CacheOptions{})
			},
			sent: wantHeader("If-None-Match", `"e"`),
		},
		{
			name: "RateLimit", method: "PUT", steps: []step{{status: 429, header: map[string]string{"Retry-After": "1"}}, {status: 200}},
			rt: func(base http.RoundTripper, _ string, fc *testclock.FakeClock) http.RoundTripper {
				return NewRateLimit(base, RateLimitOptions{Clock: fc, HourlyTokens: 3600, Burst: 1})
			},
		},
		{
			name: "Retry", method: "PUT", steps: []step{{status: 503}, {status: 200}},
			rt: func(base http.RoundTripper, _ string, fc *testclock.FakeClock) http.RoundTripper {
				return NewRetry(base, RetryOptions{Clock: fc})
			},
		},
		{
			name: "Instrument", method: "PUT", steps: []step{{status: 200}},
			rt: func(base http.RoundTripper, _ string, fc *testclock.FakeClock) http.RoundTripper {
				m, _ := NewMetrics(nil)
				return NewInstrument(base, m, fc)
			},
		},
		{
			name: "Logging", method: "PUT", steps: []step{{status: 200}},
			rt: func(base http.RoundTripper, _ string, fc *testclock.FakeClock) http.RoundTripper {
				return NewLogging(base, slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug})), fc)
			},
		},
		{
			name: "New", method: "PUT",
			steps: []step{{status: 503}, {status: 429, header: map[string]string{"Retry-After": "1"}}, {status: 200}},
			rt:    newChain,
			sent:  wantHeader("Authorization", "Bearer tok"),
		},
		{
			name: "New conditional GET", method: "GET",
			steps: []step{{status: 200, header: etag, body: "x"}, {status: 503}, {status: 304, header: etag}},
			prime: true,
			rt:    newChain,
			sent:  wantHeader("If-None-Match", `"e"`),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newScripted(t, tt.steps...)
			fc := newFakeClock()
			rt := tt.rt(newTransport(t), srv.URL, fc)
			ctx := context.WithValue(t.Context(), ctxKey{}, "caller")
			newReq := func() *http.Request {
				body := ""
				if tt.method != "GET" {
					body = `{"payload":true}`
				}
				req := mustRequest(t, ctx, tt.method, srv.URL+"/repos/o/r/issues/1?page=2&per_page=100", body)
				req.Header.Set("Accept", "application/vnd.github+json")
				req.Header.Add("X-Custom", "a")
				req.Header.Add("X-Custom", "b")
				return req
			}
			if tt.prime {
				r := pumped(t, fc, time.Second, rt, newReq())
				if r.err != nil {
					t.Fatalf("priming RoundTrip: %v", r.err)
				}
				readBody(t, r.resp)
			}
			req := newReq()
			before := snapshot(t, req)
			body, url := req.Body, req.URL
			r := pumped(t, fc, time.Second, rt, req)
			if r.err != nil {
				t.Fatalf("RoundTrip: %v", r.err)
			}
			readBody(t, r.resp)
			if got, want := r.resp.StatusCode, 200; got != want {
				t.Errorf("status: got %v, want %v", got, want)
			}
			if diff := cmp.Diff(before, snapshot(t, req)); diff != "" {
				t.Errorf("request changed by RoundTrip (-before +after):\n%s", diff)
			}
			if req.Body != body || req.URL != url || req.Context() != ctx {
				t.Error("request's Body, URL or context replaced by RoundTrip")
			}
			if tt.sent != nil {
				sent := srv.requestHeaders()
				if err := tt.sent(sent[len(sent)-1]); err != nil {
					t.Errorf("request the server received: %v", err)
				}
			}
		})
	}
}

func newChain(base http.RoundTripper, url string, fc *testclock.FakeClock) http.RoundTripper {
	return New(Options{Base: base, Endpoint: url, Tokens: StaticToken("tok"), Clock: fc,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), RateLimit: RateLimitOptions{HourlyTokens: 3600, Burst: 1}})
}

func wantHeader(name, value string) func(http.Header) error {
	return func(h http.Header) error {
		if got := h.Get(name); got != value {
			return fmt.Errorf("%s: got %q, want %q", name, got, value)
		}
		return nil
	}
}

// TestChainConcurrent drives 100 goroutines through the whole chain with a
// GitHub App, metrics, logs, the budget, the cache and retried 503s, under
// -race.
func TestChainConcurrent(t *testing.T) {
	t.Parallel()
	fc := newFakeClock()
	g := newFakeGitHub(t, fc, map[string]int64{"o0": 1, "o1": 2, "o2": 3})
	g.failEvery = 7
	reg := prometheus.NewPedanticRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))
	base := newTransport(t)
	appRT := New(Options{Base: base, Endpoint: g.URL, Clock: fc, Metrics: m, Logger: logger, DisableCache: true})
	app := g.source(t, AppConfig{Transport: appRT})
	rt := New(Options{Base: base, Endpoint: g.URL, Tokens: app, Clock: fc, Metrics: m, Logger: logger,
		Retry:     RetryOptions{MaxAttempts: 10},
		RateLimit: RateLimitOptions{HourlyTokens: 360000, Burst: 50}})
	client := &http.Client{Transport: rt}

	stop := pump(fc, 100*time.Millisecond)
	defer stop()
	const goroutines, perGoroutine = 100, 4
	var wg sync.WaitGroup
	for i := range goroutines {
		wg.Go(func() {
			owner := fmt.Sprintf("o%d", i%3)
			installation := fmt.Sprint(i%3 + 1)
			get := fmt.Sprintf("%s/repos/%s/r/issues/%d/comments", g.URL, owner, i%10)
			var first string
			for j := range perGoroutine {
				req := mustRequest(t, t.Context(), "GET", get, "")
				body, err := do(client, req)
				if err != nil {
					t.Errorf("GET %s: %v", get, err)
					return
				}
				if !strings.Contains(body, `"installation":"`+installation+`"`) {
					t.Errorf("GET %s: got %s, want installation %s's view", get, body, installation)
				}
				if j == 0 {
					first = body
				} else if body != first {
					t.Errorf("GET %s again: got %s, want %s", get, body, first)
				}
			}
			post := fmt.Sprintf("%s/repos/%s/r/statuses/sha%d", g.URL, owner, i)
			payload := fmt.Sprintf(`{"state":"success","n":%d}`, i)
			body, err := do(client, mustRequest(t, WithRetryable(t.Context()), "POST", post, payload))
			if err != nil {
				t.Errorf("POST %s: %v", post, err)
				return
			}
			if !strings.Contains(body, fmt.Sprintf(`"body":%q`, payload)) {
				t.Errorf("POST %s: got %s, want the payload echoed", post, body)
			}
		})
	}
	wg.Wait()
	if got, want := g.lookups.Load(), int32(3); got != want {
		t.Errorf("installation lookups: got %v, want %v", got, want)
	}
	if got, want := g.exchanges.Load(), int32(3); got != want {
		t.Errorf("token exchanges: got %v, want %v", got, want)
	}
	if got, want := testutil.ToFloat64(m.remaining.WithLabelValues("core")), 4000.0; got != want {
		t.Errorf("rate limit remaining: got %v, want %v", got, want)
	}
	if got := testutil.CollectAndCount(m.requests); got < 4 {
		t.Errorf("request series: got %v, want at least 4", got)
	}
}

// do sends req with client and returns the body of a 200 response.
func do(client *http.Client, req *http.Request) (string, error) {
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return string(b), nil
}

// BenchmarkChainOverhead measures the chain's own cost per request, over
// an in-memory base.
func BenchmarkChainOverhead(b *testing.B) {
	m, err := NewMetrics(nil)
	if err != nil {
		b.Fatal(err)
	}
	base := RoundTripperFunc(func(req *http.Request) (*http.Response, error) {
		h := http.Header{"X-Ratelimit-Remaining": {"4000"}, "X-Ratelimit-Reset": {"9999999999"}}
		return &http.Response{StatusCode: 200, Header: h, Body: io.NopCloser(strings.NewReader(`{"ok":true}`))}, nil
	})
	rt := New(Options{Base: base, Endpoint: "https://api.github.com", Tokens: StaticToken("tok"), Metrics: m,
		Logger: slog.New(slog.DiscardHandler)})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("GET", "https://api.github.com/repos/o/r/pulls/1", nil)
			resp, err := rt.RoundTrip(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
	})
}

// BenchmarkChainCachedGET measures a revalidated GET (304 turned into the
// cached 200) through the whole chain over loopback HTTP.
func BenchmarkChainCachedGET(b *testing.B) {
	etag := map[string]string{"ETag": `"e"`, "X-RateLimit-Remaining": "4000", "X-RateLimit-Reset": "9999999999"}
	srv := newScripted(b, step{status: 200, header: etag, body: `{"ok":true}`}, step{status: 304, header: etag})
	m, err := NewMetrics(nil)
	if err != nil {
		b.Fatal(err)
	}
	rt := New(Options{Base: newTransport(b), Endpoint: srv.URL, Tokens: StaticToken("tok"), Metrics: m,
		Logger: slog.New(slog.DiscardHandler)})
	client := &http.Client{Transport: rt}
	get := func() error {
		resp, err := client.Get(srv.URL + "/repos/o/r/pulls/1")
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	}
	if err := get(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := get(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
