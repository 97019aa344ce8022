package transport

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// unix formats t as X-RateLimit-Reset does.
func unix(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

// TestRateLimitWaitsForReset: a response with X-RateLimit-Remaining: 0
// and a reset ahead holds the next request until the reset, on the clock.
func TestRateLimitWaitsForReset(t *testing.T) {
	t.Parallel()
	fc := newFakeClock()
	reset := fc.Now().Add(30 * time.Second)
	srv := newScripted(t,
		step{status: 200, header: map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": unix(reset), "X-RateLimit-Resource": "core"}},
		step{status: 200, body: "after reset"})
	rt := NewRateLimit(newTransport(t), RateLimitOptions{Clock: fc})

	r := await(t, roundTripAsync(rt, mustRequest(t, t.Context(), "GET", srv.URL+"/repos/o/r", "")))
	if r.err != nil {
		t.Fatalf("first RoundTrip: %v", r.err)
	}
	readBody(t, r.resp)

	ch := roundTripAsync(rt, mustRequest(t, t.Context(), "GET", srv.URL+"/repos/o/r/pulls", ""))
	poll(t, "the wait for the reset", fc.HasWaiters)
	fc.Step(29 * time.Second)
	notYet(t, ch)
	if got, want := srv.hits.Load(), int32(1); got != want {
		t.Errorf("requests before the reset: got %v, want %v", got, want)
	}
	fc.Step(time.Second)
	r = await(t, ch)
	if r.err != nil {
		t.Fatalf("second RoundTrip: %v", r.err)
	}
	if got, want := readBody(t, r.resp), "after reset"; got != want {
		t.Errorf("body: got %v, want %v", got, want)
	}
	if fc.Now().Before(reset) {
		t.Errorf("request sent at %v, before the reset at %v", fc.Now(), reset)
	}
}

// TestRateLimitSecondary: a 403 or 429 with Retry-After is waited out and
// the request sent again, POST included.
func TestRateLimitSecondary(t *testing.T) {
	t.Parallel()
	for _, status := range []int{403, 429} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			t.Parallel()
			fc := newFakeClock()
			srv := newScripted(t,
				step{status: status, header: map[string]string{"Retry-After": "7"}, body: "You have exceeded a secondary rate limit"},
				step{status: 201, body: "created"})
			rt := NewRateLimit(newTransport(t), RateLimitOptions{Clock: fc})
			ch := roundTripAsync(rt, mustRequest(t, t.Context(), "POST", srv.URL+"/repos/o/r/issues/1/comments", `{"body":"hi"}`))
			poll(t, "the Retry-After wait", fc.HasWaiters)
			fc.Step(6 * time.Second)
			notYet(t, ch)
			fc.Step(time.Second)
			r := await(t, ch)
			if r.err != nil {
				t.Fatalf("RoundTrip: %v", r.err)
			}
			if got, want := readBody(t, r.resp), "created"; got != want {
				t.Errorf("body: got %v, want %v", got, want)
			}
			want := []string{`{"body":"hi"}`, `{"body":"hi"}`}
			if diff := cmp.Diff(want, srv.requestBodies()); diff != "" {
				t.Errorf("bodies the server received (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRateLimitPrimary403: a 403 with X-RateLimit-Remaining: 0 waits until
// X-RateLimit-Reset and sends again.
func TestRateLimitPrimary403(t *testing.T) {
	t.Parallel()
	fc := newFakeClock()
	reset := fc.Now().Add(20 * time.Second)
	srv := newScripted(t,
		step{status: 403, header: map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": unix(reset)}, body: "API rate limit exceeded"},
		step{status: 200, header: map[string]string{"X-RateLimit-Remaining": "4999", "X-RateLimit-Reset": unix(reset.Add(time.Hour))}, body: "ok"})
	rt := NewRateLimit(newTransport(t), RateLimitOptions{Clock: fc})
	ch := roundTripAsync(rt, mustRequest(t, t.Context(), "GET", srv.URL+"/repos/o/r", ""))
	poll(t, "the wait for the reset", fc.HasWaiters)
	fc.Step(19 * time.Second)
	notYet(t, ch)
	fc.Step(time.Second)
	r := await(t, ch)
	if r.err != nil {
		t.Fatalf("RoundTrip: %v", r.err)
	}
	if got, want := readBody(t, r.resp), "ok"; got != want {
		t.Errorf("body: got %v, want %v", got, want)
	}
	if got, want := srv.hits.Load(), int32(2); got != want {
		t.Errorf("requests: got %v, want %v", got, want)
	}
}

// TestRateLimitRemainingNoWait: while requests remain, nothing waits.
func TestRateLimitRemainingNoWait(t *testing.T) {
	t.Parallel()
	fc := newFakeClock()
	srv := newScripted(t, step{status: 200, header: map[string]string{
		"X-RateLimit-Remaining": "1", "X-RateLimit-Reset": unix(fc.Now().Add(time.Hour))}})
	rt := NewRateLimit(newTransport(t), RateLimitOptions{Clock: fc})
	for i := range 3 {
		r := await(t, roundTripAsync(rt, mustRequest(t, t.Context(), "GET", srv.URL+"/repos/o/r", "")))
		if r.err != nil {
			t.Fatalf("RoundTrip %d: %v", i, r.err)
		}
		readBody(t, r.resp)
	}
	if fc.HasWaiters() {
		t.Error("something waits on the clock, want nothing")
	}
}

// TestRateLimitMalformedHeaders: headers that do not parse are ignored:
// no wait, no resend, the response returned as it came.
func TestRateLimitMalformedHeaders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		status int
		header map[string]string
	}{
		{"200 with garbage", 200, map[string]string{"X-RateLimit-Remaining": "lots", "X-RateLimit-Reset": "soon", "Retry-After": "later"}},
		{"200 remaining 0 without reset", 200, map[string]string{"X-RateLimit-Remaining": "0"}},
		{"200 remaining 0 with garbage reset", 200, map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "tomorrow"}},
		{"200 remaining 0 with huge reset", 200, map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "99999999999999999999"}},
		{"200 negative remaining", 200, map[string]string{"X-RateLimit-Remaining": "-1", "X-RateLimit-Reset": "1"}},
		{"403 garbage Retry-After", 403, map[string]string{"Retry-After": "later", "X-RateLimit-Remaining": "x"}},
		{"403 without headers", 403, nil},
		{"403 with requests left", 403, map[string]string{"X-RateLimit-Remaining": "12"}},
		{"403 Retry-After zero", 403, map[string]string{"Retry-After": "0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fc := newFakeClock()
			srv := newScripted(t, step{status: tt.status, header: tt.header})
			rt := NewRateLimit(newTransport(t), RateLimitOptions{Clock: fc})
			for i := range 2 {
				r := await(t, roundTripAsync(rt, mustRequest(t, t.Context(), "GET", srv.URL+"/repos/o/r", "")))
				if r.err != nil {
					t.Fatalf("RoundTrip %d: %v", i, r.err)
				}
				readBody(t, r.resp)
				if got := r.resp.StatusCode; got != tt.status {
					t.Errorf("status: got %v, want %v", got, tt.status)
				}
			}
			if got, want := srv.hits.Load(), int32(2); got != want {
				t.Errorf("requests: got %v, want %v", got, want)
			}
			if fc.HasWaiters() {
				t.Error("something waits on the clock, want nothing")
			}
		})
	}
}

// TestRateLimit429WithoutHeaders waits a minute, as GitHub asks.
func TestRateLimit429WithoutHeaders(t *testing.T) {
	t.Parallel()
	fc := newFakeClock()
	srv := newScripted(t, step{status: 429}, step{status: 200})
	rt := NewRateLimit(newTransport(t), RateLimitOptions{Clock: fc})
	ch := roundTripAsync(rt, mustRequest(t, t.Context(), "GET", srv.URL+"/repos/o/r", ""))
	poll(t, "the wait", fc.HasWaiters)
	fc.Step(59 * time.Second)
	notYet(t, ch)
	fc.Step(time.Second)
	r := await(t, ch)
	if r.err != nil {
		t.Fatalf("RoundTrip: %v", r.err)
	}
	readBody(t, r.resp)
	if got, want := r.resp.StatusCode, 200; got != want {
		t.Errorf("status: got %v, want %v", got, want)
	}
}

// TestRateLimitGivesUp returns the limited response after MaxRetries
// resends, and at once when the wait exceeds MaxWait.
func TestRateLimitGivesUp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		header   map[string]string
		wantHits int32
	}{
		{"max retries", map[string]string{"Retry-After": "1"}, 3},
		{"max wait", map[string]string{"Retry-After": "7200"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fc := newFakeClock()
			srv := newScripted(t, step{status: 429, header: tt.header})
			rt := NewRateLimit(newTransport(t), RateLimitOptions{Clock: fc, MaxRetries: 2, MaxWait: time.Hour})
			r := pumped(t, fc, time.Second, rt, mustRequest(t, t.Context(), "GET", srv.URL+"/x", ""))
			if r.err != nil {
				t.Fatalf("RoundTrip: %v", r.err)
			}
			readBody(t, r.resp)
			if got, want := r.resp.StatusCode, 429; got != want {
				t.Errorf("status: got %v, want %v", got, want)
			}
			if got := srv.hits.Load(); got != tt.wantHits {
				t.Errorf("requests: got %v, want %v", got, tt.wantHits)
			}
		})
	}
}

// TestRateLimitPerIdentity: one token's exhausted window does not hold
// back another token or another resource.
func TestRateLimitPerIdentity(t *testing.T) {
	t.Parallel()
	fc := newFakeClock()
	srv := newScripted(t, step{status: 200, header: map[string]string{
		"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": unix(fc.Now().Add(time.Hour)), "X-RateLimit-Resource": "core"}})
	rl := NewRateLimit(newTransport(t), RateLimitOptions{Clock: fc})
	send := func(token, path string) <-chan result {
		req := mustRequest(t, t.Context(), "GET", srv.URL+path, "")
		req.Header.Set("Authorization", "Bearer "+token)
		return roundTripAsync(rl, req)
	}
	r := await(t, send("exhausted", "/repos/o/r"))
	if r.err != nil {
		t.Fatalf("RoundTrip: %v", r.err)
	}
	readBody(t, r.resp)
	for _, c := range []struct{ token, path string }{{"other", "/repos/o/r"}, {"exhausted", "/search/issues"}} {
		r := await(t, send(c.token, c.path))
		if r.err != nil {
			t.Fatalf("RoundTrip: %v", r.err)
		}
		readBody(t, r.resp)
	}
	if fc.HasWaiters() {
		t.Fatal("a request with another token or resource waits, want none")
	}
	ch := send("exhausted", "/repos/o/r/pulls")
	poll(t, "the exhausted token's wait", fc.HasWaiters)
	notYet(t, ch)
	fc.Step(time.Hour)
	if r := await(t, ch); r.err != nil {
		t.Fatalf("RoundTrip: %v", r.err)
	} else {
		readBody(t, r.resp)
	}
}

// TestRateLimitBudget: with 3600 tokens an hour and a burst of 2, two
// requests go at once and the third waits a second.
func TestRateLimitBudget(t *testing.T) {
	t.Parallel()
	fc := newFakeClock()
	srv := newScripted(t, step{status: 200})
	rt := NewRateLimit(newTransport(t), RateLimitOptions{Clock: fc, HourlyTokens: 3600, Burst: 2})
	for i := range 2 {
		r := await(t, roundTripAsync(rt, mustRequest(t, t.Context(), "GET", srv.URL+"/x", "")))
		if r.err != nil {
			t.Fatalf("RoundTrip %d: %v", i, r.err)
		}
		readBody(t, r.resp)
	}
	ch := roundTripAsync(rt, mustRequest(t, t.Context(), "GET", srv.URL+"/x", ""))
	poll(t, "the budget wait", fc.HasWaiters)
	fc.Step(999 * time.Millisecond)
	notYet(t, ch)
	fc.Step(time.Millisecond)
	r := await(t, ch)
	if r.err != nil {
		t.Fatalf("RoundTrip: %v", r.err)
	}
	readBody(t, r.resp)

	// A cancelled wait gives its token back.
	ctx, cancel := context.WithCancel(t.Context())
	ch = roundTripAsync(rt, mustRequest(t, ctx, "GET", srv.URL+"/x", ""))
	poll(t, "the budget wait", fc.HasWaiters)
	cancel()
	if r := await(t, ch); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("error: got %v, want context.Canceled", r.err)
	}
	fc.Step(time.Second)
	r = await(t, roundTripAsync(rt, mustRequest(t, t.Context(), "GET", srv.URL+"/x", "")))
	if r.err != nil {
		t.Fatalf("RoundTrip: %v", r.err)
	}
	readBody(t, r.resp)
	if got, want := srv.hits.Load(), int32(4); got != want {
		t.Errorf("requests: got %v, want %v", got, want)
	}
}

// TestRateLimitCancelledDuringWait: the caller's context ends a wait for a
// reset, and nothing is sent.
func TestRateLimitCancelledDuringWait(t *testing.T) {
	t.Parallel()
	fc := newFakeClock()
	srv := newScripted(t, step{status: 403, header: map[string]string{
		"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": unix(fc.Now().Add(time.Hour))}})
	rt := NewRateLimit(newTransport(t), RateLimitOptions{Clock: fc})
	ctx, cancel := context.WithCancel(t.Context())
	ch := roundTripAsync(rt, mustRequest(t, ctx, "GET", srv.URL+"/x", ""))
	poll(t, "the wait", fc.HasWaiters)
	cancel()
	if r := await(t, ch); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("error: got %v, want context.Canceled", r.err)
	}
	if got, want := srv.hits.Load(), int32(1); got != want {
		t.Errorf("requests: got %v, want %v", got, want)
	}
}

func TestResourceOf(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"/repos/o/r":           "core",
		"/graphql":             "graphql",
		"/api/graphql":         "graphql",
		"/search/issues":       "search",
		"/api/v3/search/code":  "code_search",
		"/search/code/x":       "code_search",
		"/search/codes":        "search",
		"/searching/something": "core",
	}
	for path, want := range tests {
		if got := resourceOf(path); got != want {
			t.Errorf("resourceOf(%q): got %v, want %v", path, got, want)
		}
	}
}

func TestRateLimitObserveKeepsNewestWindow(t *testing.T) {
	t.Parallel()
	fc := newFakeClock()
	l := NewRateLimit(nil, RateLimitOptions{Clock: fc})
	h := func(remaining int, reset time.Time) http.Header {
		return http.Header{"X-Ratelimit-Remaining": {strconv.Itoa(remaining)}, "X-Ratelimit-Reset": {unix(reset)}}
	}
	now := fc.Now()
	l.observe("id", "core", h(0, now.Add(time.Minute)))
	l.observe("id", "core", h(9, now.Add(time.Minute)))   // late answer from the same window
	l.observe("id", "core", h(50, now.Add(-time.Minute))) // late answer from an older window
	if got, want := l.windowWait("id", "core"), time.Minute; got != want {
		t.Errorf("wait: got %v, want %v", got, want)
	}
	l.observe("id", "core", h(5000, now.Add(time.Hour))) // a new window
	if got, want := l.windowWait("id", "core"), time.Duration(0); got != want {
		t.Errorf("wait after a new window: got %v, want %v", got, want)
	}
}
