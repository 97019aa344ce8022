package transport

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRetry(t *testing.T) {
	t.Parallel()
	ok := step{status: 200, body: "ok"}
	tests := []struct {
		name       string
		method     string
		retryable  bool
		steps      []step
		attempts   int
		wantStatus int
		wantHits   int32
	}{
		{"5xx then 200", "GET", false, []step{{status: 503}, {status: 502}, ok}, 0, 200, 3},
		{"500 until attempts run out", "GET", false, []step{{status: 500}}, 3, 500, 3},
		{"one attempt", "GET", false, []step{{status: 500}}, 1, 500, 1},
		{"501 not retried", "GET", false, []step{{status: 501}, ok}, 0, 501, 1},
		{"4xx not retried", "GET", false, []step{{status: 404}, ok}, 0, 404, 1},
		{"PUT retried", "PUT", false, []step{{status: 503}, ok}, 0, 200, 2},
		{"DELETE retried", "DELETE", false, []step{{status: 503}, ok}, 0, 200, 2},
		{"HEAD retried", "HEAD", false, []step{{status: 503}, ok}, 0, 200, 2},
		{"POST not retried", "POST", false, []step{{status: 503}, ok}, 0, 503, 1},
		{"PATCH not retried", "PATCH", false, []step{{status: 503}, ok}, 0, 503, 1},
		{"POST marked retryable", "POST", true, []step{{status: 503}, ok}, 0, 200, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newScripted(t, tt.steps...)
			fc := newFakeClock()
			rt := NewRetry(newTransport(t), RetryOptions{MaxAttempts: tt.attempts, Clock: fc})
			ctx := t.Context()
			if tt.retryable {
				ctx = WithRetryable(ctx)
			}
			r := pumped(t, fc, time.Minute, rt, mustRequest(t, ctx, tt.method, srv.URL+"/repos/o/r/statuses/abc", "x"))
			if r.err != nil {
				t.Fatalf("RoundTrip: %v", r.err)
			}
			readBody(t, r.resp)
			if got := r.resp.StatusCode; got != tt.wantStatus {
				t.Errorf("status: got %v, want %v", got, tt.wantStatus)
			}
			if got := srv.hits.Load(); got != tt.wantHits {
				t.Errorf("requests: got %v, want %v", got, tt.wantHits)
			}
		})
	}
}

func TestRetryReplaysBody(t *testing.T) {
	t.Parallel()
	srv := newScripted(t, step{status: 503}, step{status: 500}, step{status: 201})
	fc := newFakeClock()
	rt := NewRetry(newTransport(t), RetryOptions{Clock: fc})
	req := mustRequest(t, WithRetryable(t.Context()), "POST", srv.URL+"/repos/o/r/statuses/abc", `{"state":"success"}`)
	r := pumped(t, fc, time.Minute, rt, req)
	if r.err != nil {
		t.Fatalf("RoundTrip: %v", r.err)
	}
	readBody(t, r.resp)
	want := []string{`{"state":"success"}`, `{"state":"success"}`, `{"state":"success"}`}
	if diff := cmp.Diff(want, srv.requestBodies()); diff != "" {
		t.Errorf("bodies the server received (-want +got):\n%s", diff)
	}
}

func TestRetryUnreplayableBodyNotRetried(t *testing.T) {
	t.Parallel()
	srv := newScripted(t, step{status: 503}, step{status: 200})
	fc := newFakeClock()
	rt := NewRetry(newTransport(t), RetryOptions{Clock: fc})
	req := mustRequest(t, t.Context(), "PUT", srv.URL+"/x", "")
	req.Body = io.NopCloser(strings.NewReader("once")) // no GetBody
	r := pumped(t, fc, time.Minute, rt, req)
	if r.err != nil {
		t.Fatalf("RoundTrip: %v", r.err)
	}
	readBody(t, r.resp)
	if got, want := r.resp.StatusCode, 503; got != want {
		t.Errorf("status: got %v, want %v", got, want)
	}
	if got, want := srv.hits.Load(), int32(1); got != want {
		t.Errorf("requests: got %v, want %v", got, want)
	}
}

// TestRetryConnectionError has the server drop the first connection
// without answering.
func TestRetryConnectionError(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.Close()
			}
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	fc := newFakeClock()
	rt := NewRetry(newTransport(t), RetryOptions{Clock: fc})
	r := pumped(t, fc, time.Minute, rt, mustRequest(t, t.Context(), "GET", srv.URL+"/x", ""))
	if r.err != nil {
		t.Fatalf("RoundTrip: %v", r.err)
	}
	if got, want := readBody(t, r.resp), "ok"; got != want {
		t.Errorf("body: got %v, want %v", got, want)
	}
	if got, want := hits.Load(), int32(2); got != want {
		t.Errorf("requests: got %v, want %v", got, want)
	}
}

func TestRetryGivesUpOnConnectionErrors(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	failing := RoundTripperFunc(func(req *http.Request) (*http.Response, error) {
		calls.Add(1)
		return nil, errors.New("connection refused")
	})
	fc := newFakeClock()
	rt := NewRetry(failing, RetryOptions{MaxAttempts: 3, Clock: fc})
	r := pumped(t, fc, time.Minute, rt, mustRequest(t, t.Context(), "GET", "http://example.invalid/x", ""))
	if r.err == nil {
		t.Fatal("RoundTrip: got nil error, want one")
	}
	if got, want := calls.Load(), int32(3); got != want {
		t.Errorf("attempts: got %v, want %v", got, want)
	}
}

func TestRetryDoesNotRetryTokenErrors(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	failing := RoundTripperFunc(func(req *http.Request) (*http.Response, error) {
		calls.Add(1)
		return nil, &TokenError{Err: errors.New("no key")}
	})
	rt := NewRetry(failing, RetryOptions{Clock: newFakeClock()})
	_, err := rt.RoundTrip(mustRequest(t, t.Context(), "GET", "http://example.invalid/x", ""))
	if te := (*TokenError)(nil); !errors.As(err, &te) {
		t.Errorf("error: got %v, want a *TokenError", err)
	}
	if got, want := calls.Load(), int32(1); got != want {
		t.Errorf("attempts: got %v, want %v", got, want)
	}
}

// TestRetryClosesRetriedBodies counts Close calls on every response body
// the server sent.
func TestRetryClosesRetriedBodies(t *testing.T) {
	t.Parallel()
	srv := newScripted(t, step{status: 503, body: "busy"}, step{status: 502, body: "bad"}, step{status: 200, body: "ok"})
	var closed atomic.Int32
	base := newTransport(t)
	counting := RoundTripperFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := base.RoundTrip(req)
		if err == nil {
			resp.Body = countingBody{ReadCloser: resp.Body, closed: &closed}
		}
		return resp, err
	})
	fc := newFakeClock()
	r := pumped(t, fc, time.Minute, NewRetry(counting, RetryOptions{Clock: fc}), mustRequest(t, t.Context(), "GET", srv.URL+"/x", ""))
	if r.err != nil {
		t.Fatalf("RoundTrip: %v", r.err)
	}
	if got, want := closed.Load(), int32(2); got != want {
		t.Errorf("closed bodies before the caller closed its own: got %v, want %v", got, want)
	}
	if got, want := readBody(t, r.resp), "ok"; got != want {
		t.Errorf("body: got %v, want %v", got, want)
	}
	if got, want := closed.Load(), int32(3); got != want {
		t.Errorf("closed bodies after the caller closed its own: got %v, want %v", got, want)
	}
}

// TestRetryWaitsOnClock checks the backoff is spent on the injected clock:
// with Rand at 0.5 and BaseDelay 1s, the first wait is 0.5s + 0.25s.
func TestRetryWaitsOnClock(t *testing.T) {
	t.Parallel()
	srv := newScripted(t, step{status: 503}, step{status: 200})
	fc := newFakeClock()
	rt := NewRetry(newTransport(t), RetryOptions{Clock: fc, BaseDelay: time.Second, Rand: func() float64 { return 0.5 }})
	ch := roundTripAsync(rt, mustRequest(t, t.Context(), "GET", srv.URL+"/x", ""))
	poll(t, "the backoff timer", fc.HasWaiters)
	fc.Step(749 * time.Millisecond)
	notYet(t, ch)
	if got, want := srv.hits.Load(), int32(1); got != want {
		t.Errorf("requests before the backoff ended: got %v, want %v", got, want)
	}
	fc.Step(time.Millisecond)
	r := await(t, ch)
	if r.err != nil {
		t.Fatalf("RoundTrip: %v", r.err)
	}
	readBody(t, r.resp)
	if got, want := r.resp.StatusCode, 200; got != want {
		t.Errorf("status: got %v, want %v", got, want)
	}
}

func TestRetryCancelledDuringBackoff(t *testing.T) {
	t.Parallel()
	srv := newScripted(t, step{status: 503}, step{status: 200})
	fc := newFakeClock()
	ctx, cancel := context.WithCancel(t.Context())
	rt := NewRetry(newTransport(t), RetryOptions{Clock: fc})
	ch := roundTripAsync(rt, mustRequest(t, ctx, "GET", srv.URL+"/x", ""))
	poll(t, "the backoff timer", fc.HasWaiters)
	cancel()
	r := await(t, ch)
	if !errors.Is(r.err, context.Canceled) {
		t.Errorf("error: got %v, want context.Canceled", r.err)
	}
	if got, want := srv.hits.Load(), int32(1); got != want {
		t.Errorf("requests: got %v, want %v", got, want)
	}
}

func TestRetryBackoff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		attempt int
		rand    float64
		floor   time.Duration
		want    time.Duration
	}{
		{1, 0, 0, 500 * time.Millisecond},
		{1, 0.5, 0, 750 * time.Millisecond},
		{2, 0, 0, time.Second},
		{3, 0.5, 0, 3 * time.Second},
		{5, 0, 0, 8 * time.Second},
		{6, 0, 0, 15 * time.Second},
		{7, 0, 0, 15 * time.Second},
		{100, 0, 0, 15 * time.Second},
		{1, 0, 7 * time.Second, 7 * time.Second},
		{1, 0, time.Hour, 30 * time.Second},
	}
	for _, tt := range tests {
		r := NewRetry(nil, RetryOptions{BaseDelay: time.Second, MaxDelay: 30 * time.Second, Rand: func() float64 { return tt.rand }})
		if got := r.backoff(tt.attempt, tt.floor); got != tt.want {
			t.Errorf("backoff(%d, %v) with rand %v: got %v, want %v", tt.attempt, tt.floor, tt.rand, got, tt.want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		value string
		want  time.Duration
	}{
		{"", 0},
		{"7", 7 * time.Second},
		{"0", 0},
		{"-3", 0},
		{"soon", 0},
		{"1e3", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"99999999999999999999", 0},
		{"9999999999", 24 * time.Hour},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.value != "" {
			h.Set("Retry-After", tt.value)
		}
		if got := retryAfter(h, now); got != tt.want {
			t.Errorf("retryAfter(%q): got %v, want %v", tt.value, got, tt.want)
		}
	}
}
