package transport

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// RateLimitOptions configures RateLimit. The zero value is ready to use.
type RateLimitOptions struct {
	// HourlyTokens is lockstep's own budget of requests per hour, spent
	// one per attempt, and Burst how many may be spent at once (Prow's
	// --github-hourly-tokens and --github-allowed-burst). Zero
	// HourlyTokens means no budget; Burst defaults to min(100,
	// HourlyTokens).
	HourlyTokens int
	Burst        int
	// MaxWait is the longest a request waits for a rate-limit window to
	// reset or for a Retry-After; a longer wait is not made, and the
	// request is sent, or the limited response returned, at once.
	// Default 65 minutes, just over GitHub's hourly window.
	MaxWait time.Duration
	// MaxRetries is how many times a request is sent again after
	// rate-limited responses; default 3.
	MaxRetries int
	// Identity names the credentials a request will be sent with, so that
	// one token's exhausted window does not hold back another's. Default:
	// a hash of the request's Authorization header.
	Identity func(*http.Request) (string, error)
	// Clock times every wait; default the real clock.
	Clock clock.Clock
	// Logger receives a record for every wait; nil logs nothing.
	Logger *slog.Logger
}

// RateLimit is a RoundTripper that keeps lockstep within GitHub's rate
// limits. It is safe for concurrent use.
//
// It remembers, per identity and resource (core, search, graphql…), the
// last X-RateLimit-Remaining and X-RateLimit-Reset seen; while a window is
// exhausted and its reset lies ahead, requests wait for the reset instead
// of failing. A 403 or 429 carrying Retry-After (a secondary limit), or a
// 403 or 429 with X-RateLimit-Remaining: 0, is waited out and the request
// sent again, whatever its method: GitHub did not act on it. A 429 without
// usable headers waits one minute, as GitHub asks. Malformed headers are
// ignored. Every wait honours the request's context.
//
// With HourlyTokens set, each attempt also spends a token from a bucket
// refilled at HourlyTokens per hour, waiting for one when it is empty.
type RateLimit struct {
	next       http.RoundTripper
	identity   func(*http.Request) (string, error)
	clock      clock.Clock
	logger     *slog.Logger
	maxWait    time.Duration
	maxRetries int
	budget     *bucket // nil: no budget

	mu      sync.Mutex
	windows map[windowKey]window // mu guards windows
}

var _ http.RoundTripper = (*RateLimit)(nil)

// windowKey names one rate-limit window.
type windowKey struct{ identity, resource string }

// window is the last known state of a rate-limit window.
type window struct {
	remaining int
	reset     time.Time
}

// maxWindows is how many windows RateLimit keeps before dropping those
// whose reset has passed.
const maxWindows = 1024

// NewRateLimit returns a RateLimit sending requests through next.
func NewRateLimit(next http.RoundTripper, opts RateLimitOptions) *RateLimit {
	l := &RateLimit{next: next, identity: opts.Identity, clock: opts.Clock, logger: opts.Logger,
		maxWait: opts.MaxWait, maxRetries: opts.MaxRetries, windows: make(map[windowKey]window)}
	if l.identity == nil {
		l.identity = func(req *http.Request) (string, error) {
			return credentialIdentity(req.Header.Get("Authorization")), nil
		}
	}
	if l.clock == nil {
		l.clock = clock.RealClock{}
	}
	if l.logger == nil {
		l.logger = slog.New(slog.DiscardHandler)
	}
	if l.maxWait <= 0 {
		l.maxWait = 65 * time.Minute
	}
	if l.maxRetries <= 0 {
		l.maxRetries = 3
	}
	if opts.HourlyTokens > 0 {
		burst := opts.Burst
		if burst <= 0 {
			burst = min(100, opts.HourlyTokens)
		}
		l.budget = newBucket(opts.HourlyTokens, burst, l.clock.Now())
	}
	return l
}

// RoundTrip sends req once its window and budget allow, and again after
// rate-limited responses.
func (l *RateLimit) RoundTrip(req *http.Request) (*http.Response, error) {
	id, err := l.identity(req)
	if err != nil {
		closeRequestBody(req)
		return nil, fmt.Errorf("%s %s: %w", req.Method, redactedURL(req.URL), err)
	}
	ctx := req.Context()
	first := req
	if !hasAttempts(ctx) {
		ctx = withAttempts(ctx)
		first = req.Clone(ctx)
	}
	resource := resourceOf(req.URL.EscapedPath())
	for n := 0; ; n++ {
		if err := l.await(ctx, req, id, resource); err != nil {
			if n == 0 {
				closeRequestBody(req)
			}
			return nil, err
		}
		out := first
		if n > 0 {
			if out, err = resend(ctx, req); err != nil {
				return nil, fmt.Errorf("resend %s %s: replay body: %w", req.Method, redactedURL(req.URL), err)
			}
		}
		resp, err := l.next.RoundTrip(out)
		if err != nil {
			return nil, err
		}
		l.observe(id, resource, resp.Header)
		wait, limited := l.limited(resp)
		if !limited || n >= l.maxRetries || !replayable(req) || wait > l.maxWait {
			return resp, nil
		}
		l.logger.LogAttrs(ctx, slog.LevelInfo, "GitHub rate limit hit, waiting to resend",
			slog.String("method", req.Method), slog.String("route", Route(req.URL.EscapedPath())),
			slog.Int("status", resp.StatusCode), slog.Duration("wait", wait))
		discard(resp)
		if err := sleep(ctx, l.clock, wait); err != nil {
			return nil, fmt.Errorf("wait out GitHub rate limit for %s %s: %w", req.Method, redactedURL(req.URL), err)
		}
	}
}

// await waits until the window of (id, resource) is open and the budget
// has a token.
func (l *RateLimit) await(ctx context.Context, req *http.Request, id, resource string) error {
	if d := l.windowWait(id, resource); d > 0 {
		attrs := []slog.Attr{slog.String("method", req.Method), slog.String("route", Route(req.URL.EscapedPath())),
			slog.String("resource", resource), slog.Duration("wait", d)}
		if d > l.maxWait {
			l.logger.LogAttrs(ctx, slog.LevelWarn, "GitHub rate limit window resets too late to wait, sending anyway", attrs...)
		} else {
			l.logger.LogAttrs(ctx, slog.LevelInfo, "GitHub rate limit exhausted, waiting for reset", attrs...)
			if err := sleep(ctx, l.clock, d); err != nil {
				return fmt.Errorf("wait for GitHub %s rate limit reset before %s %s: %w",
					resource, req.Method, redactedURL(req.URL), err)
			}
		}
	}
	if l.budget == nil {
		return nil
	}
	if err := l.budget.wait(ctx, l.clock); err != nil {
		return fmt.Errorf("wait for hourly token budget before %s %s: %w", req.Method, redactedURL(req.URL), err)
	}
	return nil
}

// windowWait returns how long until the window of (id, resource) resets,
// if it is known to be exhausted.
func (l *RateLimit) windowWait(id, resource string) time.Duration {
	key := windowKey{id, resource}
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.windows[key]
	if !ok || w.remaining > 0 {
		return 0
	}
	now := l.clock.Now()
	if !w.reset.After(now) {
		delete(l.windows, key)
		return 0
	}
	return w.reset.Sub(now)
}

// observe records the rate-limit headers of a response. Responses may
// arrive out of order, so a window is replaced only by a later one, and
// within one window the lowest remaining count wins.
func (l *RateLimit) observe(id, resource string, h http.Header) {
	rl, ok := parseRateLimit(h, resource)
	if !ok || rl.reset == 0 {
		return
	}
	key := windowKey{id, rl.resource}
	reset := time.Unix(rl.reset, 0)
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.windows[key]
	switch {
	case !ok || reset.After(w.reset):
		l.windows[key] = window{remaining: rl.remaining, reset: reset}
	case reset.Equal(w.reset) && rl.remaining < w.remaining:
		l.windows[key] = window{remaining: rl.remaining, reset: reset}
	}
	if len(l.windows) > maxWindows {
		now := l.clock.Now()
		for k, w := range l.windows {
			if !w.reset.After(now) {
				delete(l.windows, k)
			}
		}
	}
}

// limited reports whether resp is a rate-limited answer to send again, and
// how long to wait first.
func (l *RateLimit) limited(resp *http.Response) (time.Duration, bool) {
	if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusTooManyRequests {
		return 0, false
	}
	now := l.clock.Now()
	if d := retryAfter(resp.Header, now); d > 0 {
		return d, true
	}
	if strings.TrimSpace(resp.Header.Get("X-RateLimit-Remaining")) == "0" {
		if rl, ok := parseRateLimit(resp.Header, "core"); ok && rl.reset > 0 {
			return max(time.Unix(rl.reset, 0).Sub(now), time.Second), true
		}
		return time.Minute, true
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		return time.Minute, true
	}
	return 0, false
}

// resourceOf guesses the rate-limit resource a request path counts
// against, before any response says.
func resourceOf(path string) string {
	p := trimEnterprisePrefix(path)
	switch {
	case p == "/graphql":
		return "graphql"
	case p == "/search/code" || strings.HasPrefix(p, "/search/code/"):
		return "code_search"
	case strings.HasPrefix(p, "/search/"):
		return "search"
	}
	return "core"
}

// bucket is a token bucket on an injected clock.
type bucket struct {
	rate  float64 // tokens per second
	burst float64

	mu     sync.Mutex
	tokens float64   // mu guards tokens; negative while reserved ahead
	last   time.Time // mu guards last: when tokens was last refilled
}

// newBucket returns a full bucket refilled at hourly tokens per hour.
func newBucket(hourly, burst int, now time.Time) *bucket {
	return &bucket{rate: float64(hourly) / 3600, burst: float64(burst), tokens: float64(burst), last: now}
}

// take spends a token at now and returns how long to wait before using
// it.
func (b *bucket) take(now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
		b.last = now
	}
	b.tokens--
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(math.Ceil(-b.tokens / b.rate * float64(time.Second)))
}

// putBack returns a token taken but not used.
func (b *bucket) putBack() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokens = min(b.burst, b.tokens+1)
}

// wait takes a token, waiting on clk until it is usable.
func (b *bucket) wait(ctx context.Context, clk clock.Clock) error {
	if err := sleep(ctx, clk, b.take(clk.Now())); err != nil {
		b.putBack()
		return err
	}
	return nil
}
