// Package transport is lockstep's outgoing HTTP chain for forge APIs: a
// stack of http.RoundTrippers that authenticate, cache, respect GitHub's
// rate limits, retry, and record metrics and logs for every call lockstep
// makes to GitHub.
//
// Every RoundTripper here is safe for concurrent use, never modifies the
// request it is given (it works on a req.Clone when it must change
// anything, headers included), closes the body of every response it does
// not return, and closes the request body when it fails before handing the
// request on.
//
// New assembles the standard chain. From the caller inwards:
//
//	Retry → RateLimit → Auth → Cache → Instrument → Logging → base
//
// The order follows from what each layer must see:
//
//   - Retry is outermost so that every attempt passes through the rate
//     limit gate and the hourly budget, and gets a token from Auth afresh.
//   - RateLimit sits above Auth so that a wait (up to an hour for a
//     primary limit) happens before a token is chosen: a GitHub App
//     installation token fetched before a long wait could expire during
//     it. RateLimit keys its state by a hash of the token Auth will send,
//     asking Auth for it.
//   - Auth is applied to each attempt, including rate-limit resends.
//   - Cache sits below Auth so that it keys entries by a hash of the
//     Authorization header actually sent, and above the instruments so
//     that a 304 reaches it unchanged and is turned into the stored 200.
//   - Instrument and Logging are innermost so that they see every attempt
//     and the status the server really sent: a cache revalidation shows
//     up as 304, a retried 502 as 502.
package transport

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"
)

// DefaultEndpoint is the GitHub REST API's base URL.
const DefaultEndpoint = "https://api.github.com"

// RoundTripperFunc adapts a function to http.RoundTripper.
type RoundTripperFunc func(*http.Request) (*http.Response, error)

// RoundTrip calls f(req).
func (f RoundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) {
	return f(req)
}

// Options configures the chain New builds. The zero value is an
// unauthenticated chain to DefaultEndpoint over http.DefaultTransport with
// the default retry, rate-limit and cache settings and no metrics or logs.
type Options struct {
	// Base sends requests; default http.DefaultTransport.
	Base http.RoundTripper
	// Endpoint is the API base URL, such as https://api.github.com or
	// https://ghe.example.com/api/v3. Tokens are sent only to its scheme
	// and host, never to a host a response redirects to. Default
	// DefaultEndpoint.
	Endpoint string
	// Tokens authenticates requests to Endpoint; nil sends none.
	Tokens TokenSource
	// Clock times every wait and duration; default the real clock.
	Clock clock.Clock
	// Logger receives one record per attempt and one per rate-limit wait;
	// nil logs nothing.
	Logger *slog.Logger
	// Metrics records each attempt; nil records nothing.
	Metrics *Metrics
	// Retry, RateLimit and Cache configure their layers; a nil Clock or
	// Logger in them is taken from the fields above.
	Retry     RetryOptions
	RateLimit RateLimitOptions
	Cache     CacheOptions
	// DisableCache leaves the ETag cache out of the chain.
	DisableCache bool
}

// New returns the standard chain described in the package documentation.
// It is safe for concurrent use; share one per process and endpoint so
// that the rate-limit state, hourly budget and cache are shared too.
func New(opts Options) http.RoundTripper {
	clk := opts.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	rt := opts.Base
	if rt == nil {
		rt = http.DefaultTransport
	}
	if opts.Logger != nil {
		rt = NewLogging(rt, opts.Logger, clk)
	}
	if opts.Metrics != nil {
		rt = NewInstrument(rt, opts.Metrics, clk)
	}
	if !opts.DisableCache {
		rt = NewCache(rt, opts.Cache)
	}
	rl := opts.RateLimit
	if opts.Tokens != nil {
		endpoint := opts.Endpoint
		if endpoint == "" {
			endpoint = DefaultEndpoint
		}
		auth := NewAuth(rt, opts.Tokens, endpoint)
		rt = auth
		if rl.Identity == nil {
			rl.Identity = auth.Identity
		}
	}
	if rl.Clock == nil {
		rl.Clock = clk
	}
	if rl.Logger == nil {
		rl.Logger = opts.Logger
	}
	rt = NewRateLimit(rt, rl)
	ro := opts.Retry
	if ro.Clock == nil {
		ro.Clock = clk
	}
	return NewRetry(rt, ro)
}

// retryableKey is the context key of WithRetryable.
type retryableKey struct{}

// WithRetryable marks requests made with the returned context as safe to
// send again after a connection error or a 5xx, whatever their method.
// Use it for requests that are idempotent in effect, such as creating a
// commit status: posting the same state twice leaves the same result.
func WithRetryable(ctx context.Context) context.Context {
	return context.WithValue(ctx, retryableKey{}, true)
}

// isRetryable reports whether ctx was marked by WithRetryable.
func isRetryable(ctx context.Context) bool {
	v, _ := ctx.Value(retryableKey{}).(bool)
	return v
}

// attemptsKey is the context key of an attempt counter.
type attemptsKey struct{}

// withAttempts returns ctx carrying a counter of the sends of one logical
// request, unless it carries one already. Logging increments it.
func withAttempts(ctx context.Context) context.Context {
	if _, ok := ctx.Value(attemptsKey{}).(*atomic.Int32); ok {
		return ctx
	}
	return context.WithValue(ctx, attemptsKey{}, new(atomic.Int32))
}

// hasAttempts reports whether ctx carries an attempt counter.
func hasAttempts(ctx context.Context) bool {
	_, ok := ctx.Value(attemptsKey{}).(*atomic.Int32)
	return ok
}

// nextAttempt counts one more send of the request ctx belongs to and
// returns its number, starting at 1; without a counter it returns 1.
func nextAttempt(ctx context.Context) int {
	n, ok := ctx.Value(attemptsKey{}).(*atomic.Int32)
	if !ok {
		return 1
	}
	return int(n.Add(1))
}

// sleep waits for d on clk, or until ctx is done.
func sleep(ctx context.Context, clk clock.Clock, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C():
		return nil
	}
}

// discard reads a little of resp's body, so that the connection can be
// reused, and closes it.
func discard(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	_ = resp.Body.Close()
}

// closeRequestBody closes req's body, as a RoundTripper must when it fails
// before handing req on.
func closeRequestBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// replayable reports whether req's body, if any, can be produced again.
func replayable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

// resend returns a clone of req with ctx and a fresh copy of its body, for
// sending req again after its body was consumed.
func resend(ctx context.Context, req *http.Request) (*http.Request, error) {
	out := req.Clone(ctx)
	if req.Body == nil || req.Body == http.NoBody {
		return out, nil
	}
	body, err := req.GetBody()
	if err != nil {
		return nil, err
	}
	out.Body = body
	return out, nil
}

// redactedURL is u without its user information, query and fragment,
// where credentials may hide, for error messages.
func redactedURL(u *url.URL) string {
	return u.Scheme + "://" + u.Host + u.EscapedPath()
}
