package transport

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"k8s.io/utils/clock"
)

// RetryOptions configures Retry. The zero value is ready to use.
type RetryOptions struct {
	// MaxAttempts is how many times a request is sent at most; default
	// 4. One disables retries.
	MaxAttempts int
	// BaseDelay is the backoff before the second attempt; each further
	// attempt doubles it, up to MaxDelay. Defaults 1s and 30s.
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// Clock times the backoff; default the real clock.
	Clock clock.Clock
	// Rand returns a number in [0, 1) for jitter; default math/rand/v2's
	// Float64. It must be safe for concurrent use.
	Rand func() float64
}

// Retry is a RoundTripper that sends a request again after a connection
// error or a 5xx response (except 501), with exponential backoff and
// jitter. It retries only requests that are safe to repeat: methods that
// are idempotent by definition (GET, HEAD, PUT, DELETE, OPTIONS, TRACE)
// and requests whose context was marked by WithRetryable; and only when
// their body can be replayed through req.GetBody. A Retry-After on a 5xx
// response lengthens the backoff, up to MaxDelay. The body of every
// response it retries past is closed. It is safe for concurrent use.
type Retry struct {
	next        http.RoundTripper
	maxAttempts int
	base, max   time.Duration
	clock       clock.Clock
	rand        func() float64
}

var _ http.RoundTripper = (*Retry)(nil)

// NewRetry returns a Retry sending requests through next.
func NewRetry(next http.RoundTripper, opts RetryOptions) *Retry {
	r := &Retry{next: next, maxAttempts: opts.MaxAttempts, base: opts.BaseDelay, max: opts.MaxDelay,
		clock: opts.Clock, rand: opts.Rand}
	if r.maxAttempts <= 0 {
		r.maxAttempts = 4
	}
	if r.base <= 0 {
		r.base = time.Second
	}
	if r.max <= 0 {
		r.max = 30 * time.Second
	}
	if r.max < r.base {
		r.max = r.base
	}
	if r.clock == nil {
		r.clock = clock.RealClock{}
	}
	if r.rand == nil {
		r.rand = rand.Float64
	}
	return r
}

// RoundTrip sends req, and sends it again while it fails in a retryable
// way and attempts remain.
func (r *Retry) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := withAttempts(req.Context())
	attempts := r.maxAttempts
	if !r.safe(req) {
		attempts = 1
	}
	for attempt := 1; ; attempt++ {
		var out *http.Request
		if attempt == 1 {
			out = req.Clone(ctx) // sends req.Body itself
		} else {
			var err error
			if out, err = resend(ctx, req); err != nil {
				return nil, fmt.Errorf("retry %s %s: replay body: %w", req.Method, redactedURL(req.URL), err)
			}
		}
		resp, err := r.next.RoundTrip(out)
		last := attempt >= attempts
		var wait time.Duration
		switch {
		case err != nil:
			if last || ctx.Err() != nil || !retryableError(err) {
				return nil, err
			}
			wait = r.backoff(attempt, 0)
		case retryableStatus(resp.StatusCode) && !last:
			wait = r.backoff(attempt, retryAfter(resp.Header, r.clock.Now()))
			discard(resp)
		default:
			return resp, nil
		}
		if err := sleep(ctx, r.clock, wait); err != nil {
			return nil, fmt.Errorf("retry %s %s after attempt %d: %w", req.Method, redactedURL(req.URL), attempt, err)
		}
	}
}

// safe reports whether req may be sent more than once.
func (r *Retry) safe(req *http.Request) bool {
	if !replayable(req) {
		return false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete,
		http.MethodOptions, http.MethodTrace:
		return true
	}
	return isRetryable(req.Context())
}

// backoff returns the wait after the given attempt: BaseDelay doubled per
// attempt, capped at MaxDelay, of which the upper half is random; at least
// floor, and never more than MaxDelay.
func (r *Retry) backoff(attempt int, floor time.Duration) time.Duration {
	d := r.max
	if attempt-1 < 32 {
		if b := r.base << (attempt - 1); b > 0 && b < r.max {
			d = b
		}
	}
	d = d/2 + time.Duration(r.rand()*float64(d/2))
	return min(max(d, floor), r.max)
}

// retryableStatus reports whether a response with code may succeed when
// sent again.
func retryableStatus(code int) bool {
	return code >= 500 && code != http.StatusNotImplemented
}

// retryableError reports whether err, returned instead of a response, may
// go away when the request is sent again: anything but a cancelled
// context or a failure to get a token (which its TokenSource retries
// itself).
func retryableError(err error) bool {
	var te *TokenError
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) &&
		!errors.As(err, &te)
}

// maxRetryAfter caps a Retry-After in seconds, so that an absurd value
// cannot overflow a time.Duration.
const maxRetryAfter = 24 * 60 * 60

// retryAfter parses a Retry-After header, in seconds or as an HTTP date
// relative to now; zero when it is absent, malformed or in the past.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(min(s, maxRetryAfter)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
