package transport

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestLoggingNeverLogsToken sends requests carrying a token in the
// Authorization header and in the query through the whole chain, with
// successes, a retried 503, a rate-limit wait and a connection error,
// and checks the log holds neither token.
func TestLoggingNeverLogsToken(t *testing.T) {
	t.Parallel()
	const token, queryToken = "ghp_HEADERSECRET", "QUERYSECRET"
	fc := newFakeClock()
	srv := newScripted(t,
		step{status: 503},
		step{status: 429, header: map[string]string{"Retry-After": "1"}},
		step{status: 200, header: map[string]string{"ETag": `"e"`}, body: "ok"})
	var buf syncBuffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rt := New(Options{Base: newTransport(t), Endpoint: srv.URL, Tokens: StaticToken(token), Clock: fc, Logger: logger})

	for _, u := range []string{srv.URL + "/repos/o/r/issues/1?access_token=" + queryToken} {
		r := pumped(t, fc, time.Second, rt, mustRequest(t, t.Context(), "GET", u, ""))
		if r.err != nil {
			t.Fatalf("RoundTrip: %v", r.err)
		}
		readBody(t, r.resp)
	}
	// A connection error: a server that is gone.
	gone := httptest.NewServer(http.NotFoundHandler())
	goneURL := gone.URL
	gone.Close()
	dead := New(Options{Base: newTransport(t), Endpoint: goneURL, Tokens: StaticToken(token), Clock: fc, Logger: logger,
		Retry: RetryOptions{MaxAttempts: 2}})
	r := pumped(t, fc, time.Minute, dead, mustRequest(t, t.Context(), "POST", goneURL+"/repos/o/r/statuses/abc?token="+queryToken, "{}"))
	if r.err == nil {
		t.Fatal("RoundTrip to a closed server: got nil error, want one")
	}

	out := buf.String()
	for _, secret := range []string{token, queryToken, "Authorization", "access_token"} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains %q:\n%s", secret, out)
		}
	}
	for _, want := range []string{
		"route=/repos/{owner}/{repo}/issues/{number}",
		"status=503",
		"attempt=2",
		"attempt=3",
		"GitHub rate limit hit",
		"GitHub request failed",
		"route=/repos/{owner}/{repo}/statuses/{sha}",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

func TestRedactError(t *testing.T) {
	t.Parallel()
	req := mustRequest(t, t.Context(), "GET", "https://user:pw-secret@api.github.com/repos/o/r?access_token=qsecret&x=y", "")
	req.Header.Set("Authorization", "Bearer hsecret")
	tests := []error{
		&url.Error{Op: "Get", URL: req.URL.String(), Err: errors.New("dial tcp: connection refused")},
		errors.New("failed " + req.URL.String() + " with Bearer hsecret"),
		errors.New("token hsecret rejected; query access_token=qsecret&x=y; password pw-secret"),
	}
	for _, err := range tests {
		got := redactError(err, req)
		for _, secret := range []string{"hsecret", "qsecret", "pw-secret"} {
			if strings.Contains(got, secret) {
				t.Errorf("redactError(%q): got %q, which contains %q", err, got, secret)
			}
		}
	}
}
