// Package githubtest is a stateful fake of the GitHub REST API on an
// httptest server, for tests of lockstep's GitHub client and of the parts
// of lockstep that talk to GitHub through it.
//
// A Server holds repositories, pull requests (with their files and
// labels), issue comments, commit statuses, organization members and
// repository collaborators, seeded and read back by tests through its
// methods, and answers the endpoints lockstep uses with GitHub's JSON,
// status codes, pagination (Link headers), rate-limit headers and ETags.
// Every request is recorded in a call log. Faults (latency, 5xx answers,
// primary and secondary rate limits, failing routes) can be injected at
// any time.
//
// Every method of Server is safe for concurrent use, also while requests
// are being served.
package githubtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// EnterprisePrefix is the path under which GitHub Enterprise Server serves
// its REST API. The Server answers under it as well as at its root, so
// that URL()+EnterprisePrefix works as an Enterprise endpoint.
const EnterprisePrefix = "/api/v3"

// DefaultUser is the login of the authenticated user until SetUser
// changes it.
const DefaultUser = "lockstep-bot"

// Rate-limit defaults, as GitHub grants a user or App installation.
const (
	rateLimit  = 5000
	rateWindow = time.Hour
)

// maxBody bounds the request bodies the Server reads.
const maxBody = 1 << 20

// Call is one request the Server received.
type Call struct {
	Method string
	// Path is the API path, unescaped and without EnterprisePrefix, such
	// as /repos/acme/widget/statuses/abc123.
	Path string
	// Query is the raw query string, such as per_page=100&page=2.
	Query string
	// Body is the request body.
	Body string
	// Time is when the request arrived, by the Server's clock.
	Time time.Time
	// Status is the status code of the answer.
	Status int
	// Authorized reports whether the request carried an Authorization
	// header.
	Authorized bool
	// Unexpected reports that the method and path name no endpoint the
	// Server knows; it was answered 404.
	Unexpected bool
}

// Server is a fake GitHub REST API. Create one with NewServer.
type Server struct {
	srv *httptest.Server

	mu sync.Mutex
	// mu guards everything below.
	now     func() time.Time
	latency time.Duration
	waiting int    // requests waiting out the latency
	user    string // authenticated user's login
	appSlug string // when set, requests act as the App "<slug>[bot]"
	repos   map[string]*repoState
	orgs    map[string]map[string]bool // lower-case org → lower-case member logins
	nextID  int64
	calls   []Call
	// rate-limit window
	remaining int
	used      int
	reset     time.Time
	// faults
	failNext       int
	failStatus     int
	secondaryNext  int
	secondaryAfter int
	rules          map[string]failRule // by the string given to Fail
}

// failRule is a persistent failure set by Fail.
type failRule struct {
	method string // empty: any
	prefix string
	status int
}

// NewServer starts a Server, closed when the test ends.
func NewServer(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		now:       time.Now,
		user:      DefaultUser,
		repos:     make(map[string]*repoState),
		orgs:      make(map[string]map[string]bool),
		nextID:    1000000,
		remaining: rateLimit,
		rules:     make(map[string]failRule),
	}
	s.reset = s.now().Add(rateWindow)
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	t.Cleanup(s.srv.Close)
	return s
}

// URL returns the Server's base URL, such as http://127.0.0.1:41234,
// without a trailing slash.
func (s *Server) URL() string { return s.srv.URL }

// Client returns an http.Client that sends requests to the Server
// directly, without lockstep's transport chain.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// SetNow sets the clock the Server dates comments, statuses and calls by
// and runs its rate-limit window on; default time.Now.
func (s *Server) SetNow(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// SetLatency delays every answer by d (0: none). A request whose context
// ends during the delay is answered at once.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// FailNext answers the next n requests with status and a JSON message.
// The checks run in this order: an exhausted primary rate limit, then
// SecondaryRateLimitNext, then FailNext, then Fail rules, then the
// endpoint. Injected failures do not count against the rate limit.
func (s *Server) FailNext(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext, s.failStatus = n, status
}

// SecondaryRateLimitNext answers the next n requests with GitHub's
// secondary rate limit: 403 with Retry-After: retryAfter (seconds) and
// GitHub's message and documentation URL.
func (s *Server) SecondaryRateLimitNext(n, retryAfter int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secondaryNext, s.secondaryAfter = n, retryAfter
}

// SetRateLimitRemaining sets the primary rate-limit window: remaining
// requests until reset. While remaining is 0 and the Server's clock is
// before reset, every request is answered 403 "API rate limit exceeded"
// with X-RateLimit-Remaining: 0. Once the clock reaches reset, a new
// window of 5000 requests starts, ending an hour later.
func (s *Server) SetRateLimitRemaining(remaining int, reset time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.remaining = max(remaining, 0)
	s.used = max(rateLimit-s.remaining, 0)
	s.reset = reset
}

// RateLimitRemaining returns the requests left in the current window, as
// the next answer would report it before counting itself.
func (s *Server) RateLimitRemaining() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refreshWindow(s.now())
	return s.remaining
}

// Fail makes every request matching methodPathPrefix fail with status
// until Fail is called again with the same methodPathPrefix and status 0.
// methodPathPrefix is "METHOD /path/prefix" or "/path/prefix" for any
// method, matched against the API path; of several matching rules, the
// one with the longest prefix applies.
func (s *Server) Fail(methodPathPrefix string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if status == 0 {
		delete(s.rules, methodPathPrefix)
		return
	}
	method, prefix, ok := strings.Cut(methodPathPrefix, " ")
	if !ok {
		method, prefix = "", methodPathPrefix
	}
	s.rules[methodPathPrefix] = failRule{method: strings.ToUpper(method), prefix: prefix, status: status}
}

// Calls returns every request received since the start or the last
// ResetCalls, in order of arrival.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// CallCount returns how many recorded requests have method (any when
// empty) and a path starting with pathPrefix.
func (s *Server) CallCount(method, pathPrefix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		if (method == "" || strings.EqualFold(c.Method, method)) && strings.HasPrefix(c.Path, pathPrefix) {
			n++
		}
	}
	return n
}

// Unexpected returns the recorded requests for endpoints the Server does
// not know. A test asserts it is empty to catch calls to wrong paths.
func (s *Server) Unexpected() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if c.Unexpected {
			out = append(out, c)
		}
	}
	return out
}

// ResetCalls empties the call log.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = nil
}

// answer is a response being built.
type answer struct {
	status     int
	header     http.Header
	body       []byte
	unexpected bool
	// free: the answer does not count against the rate limit.
	free bool
}

func (s *Server) setWaiting(d int) {
	s.mu.Lock()
	s.waiting += d
	s.mu.Unlock()
}

// Waiting returns how many requests are waiting out the latency set by
// SetLatency.
func (s *Server) Waiting() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waiting
}

// serveHTTP answers one request.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, maxBody))
	s.mu.Lock()
	latency := s.latency
	s.mu.Unlock()
	if latency > 0 {
		s.setWaiting(+1)
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
		}
		t.Stop()
		s.setWaiting(-1)
	}
	a := s.handle(r, body)
	for k, v := range a.header {
		w.Header()[k] = v
	}
	w.WriteHeader(a.status)
	if a.status != http.StatusNoContent && a.status != http.StatusNotModified && r.Method != http.MethodHead {
		_, _ = w.Write(a.body)
	}
}

// handle answers r under the lock and records the call.
func (s *Server) handle(r *http.Request, body []byte) answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.refreshWindow(now)
	path := apiPath(r.URL)
	call := Call{Method: r.Method, Path: path, Query: r.URL.RawQuery, Body: string(body), Time: now,
		Authorized: r.Header.Get("Authorization") != ""}

	var a answer
	switch {
	case s.remaining <= 0:
		a = errorAnswer(http.StatusForbidden, "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, please include the request ID "+requestID(s.nextID)+".",
			"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-the-primary-rate-limit")
		a.free = true
	case s.secondaryNext > 0:
		s.secondaryNext--
		a = errorAnswer(http.StatusForbidden, "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID "+requestID(s.nextID)+".",
			"https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits")
		a.header.Set("Retry-After", strconv.Itoa(s.secondaryAfter))
		a.free = true
	case s.failNext > 0:
		s.failNext--
		a = errorAnswer(s.failStatus, http.StatusText(s.failStatus), "")
		a.free = true
	default:
		if rule, ok := s.matchRule(r.Method, path); ok {
			a = errorAnswer(rule.status, http.StatusText(rule.status), "")
			a.free = true
			break
		}
		req := &request{r: r, path: path, query: r.URL.Query(), body: body, now: now}
		a = s.route(req)
		if r.Method == http.MethodGet && a.status == http.StatusOK {
			etag := etagOf(a.body)
			a.header.Set("ETag", etag)
			a.header.Set("Cache-Control", "private, max-age=60, s-maxage=60")
			a.header.Set("Vary", "Accept, Authorization, Cookie, X-GitHub-OTP")
			if etagMatches(r.Header.Get("If-None-Match"), etag) {
				a.status, a.body, a.free = http.StatusNotModified, nil, true
			}
		}
	}
	if !a.free {
		s.remaining--
		s.used++
	}
	s.nextID++
	a.header.Set("X-GitHub-Request-Id", requestID(s.nextID))
	a.header.Set("X-GitHub-Media-Type", "github.v3; format=json")
	a.header.Set("X-GitHub-Api-Version-Selected", "2022-11-28")
	a.header.Set("X-RateLimit-Limit", strconv.Itoa(rateLimit))
	a.header.Set("X-RateLimit-Remaining", strconv.Itoa(s.remaining))
	a.header.Set("X-RateLimit-Reset", strconv.FormatInt(s.reset.Unix(), 10))
	a.header.Set("X-RateLimit-Used", strconv.Itoa(s.used))
	a.header.Set("X-RateLimit-Resource", "core")
	call.Status = a.status
	call.Unexpected = a.unexpected
	s.calls = append(s.calls, call)
	return a
}

// refreshWindow starts a new rate-limit window once the current one has
// reset. s.mu must be held.
func (s *Server) refreshWindow(now time.Time) {
	if now.Before(s.reset) {
		return
	}
	s.remaining, s.used = rateLimit, 0
	s.reset = now.Add(rateWindow).Truncate(time.Second)
}

// matchRule returns the Fail rule with the longest prefix matching method
// and path. s.mu must be held.
func (s *Server) matchRule(method, path string) (failRule, bool) {
	var best failRule
	found := false
	for _, rule := range s.rules {
		if rule.method != "" && rule.method != method || !strings.HasPrefix(path, rule.prefix) {
			continue
		}
		if !found || len(rule.prefix) > len(best.prefix) {
			best, found = rule, true
		}
	}
	return best, found
}

// apiPath returns u's path, unescaped, without EnterprisePrefix.
func apiPath(u *url.URL) string {
	p := u.Path
	if rest, ok := strings.CutPrefix(p, EnterprisePrefix); ok && (rest == "" || rest[0] == '/') {
		p = rest
	}
	if p == "" {
		p = "/"
	}
	return p
}

// requestID formats an X-GitHub-Request-Id.
func requestID(n int64) string {
	return fmt.Sprintf("CAFE:%04X:%06X:%06X:%08X", n%0xFFFF, n, n*7%0xFFFFFF, n)
}

// etagOf returns a weak ETag for body, as GitHub sends for API responses.
func etagOf(body []byte) string {
	sum := sha256.Sum256(body)
	return `W/"` + hex.EncodeToString(sum[:16]) + `"`
}

// etagMatches reports whether an If-None-Match header matches etag,
// comparing weakly as RFC 9110 asks for If-None-Match.
func etagMatches(ifNoneMatch, etag string) bool {
	if ifNoneMatch == "" {
		return false
	}
	want := strings.TrimPrefix(etag, "W/")
	for v := range strings.SplitSeq(ifNoneMatch, ",") {
		v = strings.TrimSpace(v)
		if v == "*" || strings.TrimPrefix(v, "W/") == want {
			return true
		}
	}
	return false
}

// jsonAnswer returns an answer with status and v encoded as JSON.
func jsonAnswer(status int, v any) answer {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return errorAnswer(http.StatusInternalServerError, "encode response: "+err.Error(), "")
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json; charset=utf-8")
	return answer{status: status, header: h, body: buf.Bytes()}
}

// noContent returns a 204 answer.
func noContent() answer {
	return answer{status: http.StatusNoContent, header: http.Header{}}
}

// errorAnswer returns GitHub's error shape with status.
func errorAnswer(status int, message, docURL string) answer {
	if docURL == "" {
		docURL = "https://docs.github.com/rest"
	}
	return jsonAnswer(status, map[string]any{"message": message, "documentation_url": docURL, "status": strconv.Itoa(status)})
}

// notFound is GitHub's 404 for a missing object.
func notFound() answer {
	return errorAnswer(http.StatusNotFound, "Not Found", "")
}

// validationFailed is GitHub's 422 for an invalid field.
func validationFailed(resource, field, message, docURL string) answer {
	return jsonAnswer(http.StatusUnprocessableEntity, map[string]any{
		"message": "Validation Failed",
		"errors": []map[string]string{{
			"resource": resource, "code": "custom", "field": field, "message": message,
		}},
		"documentation_url": docURL,
		"status":            "422",
	})
}

// request is a request being routed.
type request struct {
	r     *http.Request
	path  string
	query url.Values
	body  []byte
	now   time.Time
}
