package transport

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"k8s.io/utils/clock"
)

// Logging is a RoundTripper that logs every request it passes on: method,
// host, route (the path template), status, duration and attempt, which
// counts the sends of one request through Retry and RateLimit. It never
// logs a header or a query, and scrubs the request's credentials and query
// values out of error messages. It is safe for concurrent use.
//
// Responses below 400 are logged at Debug, 401, 403 and 429 at Info, and
// 5xx and transport errors at Warn.
type Logging struct {
	next   http.RoundTripper
	logger *slog.Logger
	clock  clock.PassiveClock
}

var _ http.RoundTripper = (*Logging)(nil)

// NewLogging returns a Logging writing to logger, timing requests on clk
// (nil: the real clock).
func NewLogging(next http.RoundTripper, logger *slog.Logger, clk clock.PassiveClock) *Logging {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Logging{next: next, logger: logger, clock: clk}
}

// RoundTrip sends req through the next RoundTripper and logs it.
func (t *Logging) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	attempt := nextAttempt(ctx)
	start := t.clock.Now()
	resp, err := t.next.RoundTrip(req)
	attrs := []slog.Attr{
		slog.String("method", req.Method),
		slog.String("host", req.URL.Host),
		slog.String("route", Route(req.URL.EscapedPath())),
		slog.Duration("duration", t.clock.Since(start)),
		slog.Int("attempt", attempt),
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", redactError(err, req)))
		t.logger.LogAttrs(ctx, slog.LevelWarn, "GitHub request failed", attrs...)
		return nil, err
	}
	attrs = append(attrs, slog.Int("status", resp.StatusCode))
	level := slog.LevelDebug
	switch {
	case resp.StatusCode >= 500:
		level = slog.LevelWarn
	case resp.StatusCode == http.StatusUnauthorized, resp.StatusCode == http.StatusForbidden,
		resp.StatusCode == http.StatusTooManyRequests:
		level = slog.LevelInfo
	}
	t.logger.LogAttrs(ctx, level, "GitHub request", attrs...)
	return resp, nil
}

// redactError returns err's message with req's URL reduced to its route
// and every credential and query value of req replaced by "REDACTED". A
// *url.Error contributes only its operation and cause, not its URL.
func redactError(err error, req *http.Request) string {
	msg := err.Error()
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		msg = ue.Op + ": " + ue.Err.Error()
	}
	msg = strings.ReplaceAll(msg, req.URL.String(), redactedURL(req.URL))
	var secrets []string
	if auth := req.Header.Get("Authorization"); auth != "" {
		secrets = append(secrets, auth)
		if _, cred, ok := strings.Cut(auth, " "); ok {
			secrets = append(secrets, cred)
		}
	}
	if p, ok := req.URL.User.Password(); ok {
		secrets = append(secrets, p)
	}
	for _, vs := range req.URL.Query() {
		secrets = append(secrets, vs...)
	}
	if req.URL.RawQuery != "" {
		secrets = append(secrets, req.URL.RawQuery)
	}
	for _, s := range secrets {
		if len(s) >= 4 {
			msg = strings.ReplaceAll(msg, s, "REDACTED")
		}
	}
	return msg
}
