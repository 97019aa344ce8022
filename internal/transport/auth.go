package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
)

// TokenSource supplies the token a request to the forge is authenticated
// with: a static token, or a GitHub App installation token chosen by the
// repository the request names. Token is called once per attempt, from
// many goroutines at once, so implementations must be safe for concurrent
// use and should be cheap while their token is cached. Token must not
// modify req.
type TokenSource interface {
	Token(ctx context.Context, req *http.Request) (string, error)
}

// TokenSourceFunc adapts a function to TokenSource.
type TokenSourceFunc func(ctx context.Context, req *http.Request) (string, error)

// Token calls f(ctx, req).
func (f TokenSourceFunc) Token(ctx context.Context, req *http.Request) (string, error) {
	return f(ctx, req)
}

// StaticToken returns a TokenSource that always returns token, such as a
// personal access token the caller read from a file. Formatting or logging
// the TokenSource never shows the token.
func StaticToken(token string) TokenSource {
	return staticToken{token: token}
}

// staticToken is StaticToken's TokenSource.
type staticToken struct{ token string }

// Token returns the token, or an error when it is empty.
func (s staticToken) Token(context.Context, *http.Request) (string, error) {
	if s.token == "" {
		return "", errors.New("static token is empty")
	}
	return s.token, nil
}

// String hides the token from fmt's %v and %s.
func (staticToken) String() string { return "StaticToken(REDACTED)" }

// GoString hides the token from fmt's %#v.
func (staticToken) GoString() string { return "StaticToken(REDACTED)" }

// LogValue hides the token from slog.
func (staticToken) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// TokenError reports that a TokenSource failed. Retry does not retry it:
// a TokenSource that talks to the forge retries on its own.
type TokenError struct {
	Err error
}

// Error says the token could not be had, and why.
func (e *TokenError) Error() string { return "get GitHub token: " + e.Err.Error() }

// Unwrap returns the TokenSource's error.
func (e *TokenError) Unwrap() error { return e.Err }

// Auth is a RoundTripper that adds "Authorization: Bearer <token>" from a
// TokenSource to every request for its endpoint's scheme and host. A
// request to any other host (a redirect to a download host, say) is sent
// without a token, and a request that already carries an Authorization
// header is sent as it is. It is safe for concurrent use.
type Auth struct {
	next   http.RoundTripper
	tokens TokenSource
	scheme string
	host   string
	err    error // set when the endpoint is invalid
}

var _ http.RoundTripper = (*Auth)(nil)

// NewAuth returns an Auth sending requests through next. endpoint is the
// API base URL; when it is not an absolute http(s) URL every request fails
// with an error naming it.
func NewAuth(next http.RoundTripper, tokens TokenSource, endpoint string) *Auth {
	a := &Auth{next: next, tokens: tokens}
	u, err := url.Parse(endpoint)
	switch {
	case err != nil:
		a.err = fmt.Errorf("GitHub API endpoint %q: %w", endpoint, err)
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		a.err = fmt.Errorf("GitHub API endpoint %q: want an absolute http(s) URL such as %s", endpoint, DefaultEndpoint)
	default:
		a.scheme, a.host = u.Scheme, canonicalHost(u)
	}
	return a
}

// RoundTrip sends a clone of req carrying a token.
func (a *Auth) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("Authorization") != "" {
		return a.next.RoundTrip(req)
	}
	authz, err := a.authorization(req)
	if err != nil {
		closeRequestBody(req)
		return nil, fmt.Errorf("%s %s: %w", req.Method, redactedURL(req.URL), err)
	}
	if authz == "" {
		return a.next.RoundTrip(req)
	}
	out := req.Clone(req.Context())
	out.Header.Set("Authorization", authz)
	return a.next.RoundTrip(out)
}

// Identity returns a hash naming the credentials req would be sent with
// (empty for none), for RateLimitOptions.Identity. The token itself is
// never returned or kept.
func (a *Auth) Identity(req *http.Request) (string, error) {
	authz, err := a.authorization(req)
	if err != nil {
		return "", err
	}
	return credentialIdentity(authz), nil
}

// authorization returns the Authorization header req is to be sent with.
func (a *Auth) authorization(req *http.Request) (string, error) {
	if h := req.Header.Get("Authorization"); h != "" {
		return h, nil
	}
	if a.err != nil {
		return "", a.err
	}
	if !strings.EqualFold(req.URL.Scheme, a.scheme) || canonicalHost(req.URL) != a.host {
		return "", nil
	}
	tok, err := a.tokens.Token(req.Context(), req)
	if err != nil {
		return "", &TokenError{Err: err}
	}
	if tok == "" {
		return "", &TokenError{Err: errors.New("token source returned an empty token")}
	}
	return "Bearer " + tok, nil
}

// canonicalHost is u's host in lower case without its scheme's default
// port.
func canonicalHost(u *url.URL) string {
	host := strings.ToLower(u.Host)
	switch strings.ToLower(u.Scheme) {
	case "https":
		host = strings.TrimSuffix(host, ":443")
	case "http":
		host = strings.TrimSuffix(host, ":80")
	}
	return host
}
