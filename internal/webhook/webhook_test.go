package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/testfixtures"
)

var testSecret = []byte("It's a Secret to Everybody")

// memorySink keeps deliveries in memory, refusing duplicates by id.
type memorySink struct {
	mu sync.Mutex
	// mu guards the fields below.
	deliveries []Delivery
	ids        map[string]bool
	err        error
}

func (s *memorySink) Accept(_ context.Context, d Delivery) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return false, s.err
	}
	if s.ids[d.ID] {
		return true, nil
	}
	if s.ids == nil {
		s.ids = map[string]bool{}
	}
	s.ids[d.ID] = true
	s.deliveries = append(s.deliveries, d)
	return false, nil
}

func (s *memorySink) all() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Delivery(nil), s.deliveries...)
}

// metricsRecorder records Metrics calls.
type metricsRecorder struct {
	mu sync.Mutex
	// mu guards calls.
	calls []string
}

func (m *metricsRecorder) record(event, outcome string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, event+" "+outcome)
}

func (m *metricsRecorder) get() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.calls...)
}

// signedRequest builds a delivery as GitHub sends it.
func signedRequest(event, id string, body []byte) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/hook", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set(HeaderEvent, event)
	r.Header.Set(HeaderDelivery, id)
	r.Header.Set(HeaderHookID, "12345")
	r.Header.Set(HeaderSignature, Sign(testSecret, body))
	return r
}

// formRequest builds a delivery as GitHub sends it with its default
// content type, application/x-www-form-urlencoded, signed over form.
func formRequest(event, id, form string) *http.Request {
	r := signedRequest(event, id, []byte(form))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}

type testHandler struct {
	handler http.Handler
	sink    *memorySink
	metrics *metricsRecorder
	clock   *clocktesting.FakePassiveClock
	// mu guards refused.
	mu      sync.Mutex
	refused []store.Refusal
}

func (th *testHandler) refusals() []store.Refusal {
	th.mu.Lock()
	defer th.mu.Unlock()
	return append([]store.Refusal(nil), th.refused...)
}

func newTestHandler(t *testing.T, maxBody int64) *testHandler {
	t.Helper()
	th := &testHandler{
		sink:    &memorySink{},
		metrics: &metricsRecorder{},
		clock:   clocktesting.NewFakePassiveClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)),
	}
	th.handler = NewHandler(HandlerOptions{
		Secret:  func() ([]byte, error) { return testSecret, nil },
		Sink:    th.sink,
		Clock:   th.clock,
		MaxBody: maxBody,
		Metrics: th.metrics.record,
		Refused: func(r store.Refusal) {
			th.mu.Lock()
			defer th.mu.Unlock()
			th.refused = append(th.refused, r)
		},
	})
	return th
}

func (th *testHandler) serve(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	th.handler.ServeHTTP(w, r)
	return w
}

func TestHandlerAcceptsFixtures(t *testing.T) {
	t.Parallel()
	th := newTestHandler(t, 0)
	n := 0
	for _, event := range knownEvents() {
		for _, p := range testfixtures.GitHubPayloads(t, event) {
			n++
			id := fmt.Sprintf("00000000-0000-4000-8000-%012d", n)
			w := th.serve(signedRequest(event, id, p.Body))
			if w.Code != http.StatusAccepted {
				t.Errorf("%s/%s: got status %d (%s), want 202", event, p.Name, w.Code, w.Body)
				continue
			}
			if want := "delivery " + id + ": accepted " + event + "\n"; w.Body.String() != want {
				t.Errorf("%s/%s: got body %q, want %q", event, p.Name, w.Body, want)
			}
			got := th.sink.all()
			d := got[len(got)-1]
			subject, err := Validate(event, p.Body)
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			want := Delivery{
				ID: id, Event: event, HookID: "12345", Signature: Sign(testSecret, p.Body),
				ReceivedAt: th.clock.Now(), Subject: subject,
			}
			// go-cmp compares bytes one by one: slow on 30 KB.
			if !bytes.Equal(d.Body, p.Body) {
				t.Errorf("%s/%s: stored body differs from the one sent", event, p.Name)
			}
			d.Body = nil
			if diff := cmp.Diff(want, d); diff != "" {
				t.Errorf("%s/%s: stored delivery mismatch (-want +got):\n%s", event, p.Name, diff)
			}
		}
	}
	if got := len(th.sink.all()); got != n {
		t.Errorf("got %d stored deliveries, want %d", got, n)
	}
}

// GitHub's default content type puts the JSON in the form field payload
// and signs the form as sent; lockstep verifies that and keeps the JSON.
func TestHandlerAcceptsFormEncoded(t *testing.T) {
	t.Parallel()
	th := newTestHandler(t, 0)
	n := 0
	for _, event := range knownEvents() {
		for _, p := range testfixtures.GitHubPayloads(t, event) {
			n++
			id := fmt.Sprintf("00000000-0000-4000-8000-%012d", n)
			form := url.Values{"payload": {string(p.Body)}}.Encode()
			w := th.serve(formRequest(event, id, form))
			if w.Code != http.StatusAccepted {
				t.Errorf("%s/%s: got status %d (%s), want 202", event, p.Name, w.Code, w.Body)
				continue
			}
			got := th.sink.all()
			d := got[len(got)-1]
			if !bytes.Equal(d.Body, p.Body) {
				t.Errorf("%s/%s: stored body is not the payload's JSON", event, p.Name)
			}
			if want := Sign(testSecret, []byte(form)); d.Signature != want {
				t.Errorf("%s/%s: got signature %q, want the form's %q", event, p.Name, d.Signature, want)
			}
		}
	}
	if got := len(th.sink.all()); got != n {
		t.Errorf("got %d stored deliveries, want %d", got, n)
	}
	// A ping arrives form-encoded too.
	if w := th.serve(formRequest("ping", "ping-1", "payload=%7B%22zen%22%3A%22hi%22%7D")); w.Code != http.StatusOK {
		t.Errorf("form ping: got status %d, want 200", w.Code)
	}
}

func TestHandlerRefuses(t *testing.T) {
	t.Parallel()
	body := testfixtures.GitHubPayload(t, "pull_request", "opened.payload.json").Body
	const id = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
	push := testfixtures.GitHubPayload(t, "push", "with-new-branch.payload.json").Body
	tests := []struct {
		name        string
		req         func() *http.Request
		wantStatus  int
		wantBody    string
		wantOutcome string
	}{
		{
			name: "missing signature",
			req: func() *http.Request {
				r := signedRequest("pull_request", id, body)
				r.Header.Del(HeaderSignature)
				return r
			},
			wantStatus: 401, wantBody: "delivery " + id + ": missing X-Hub-Signature-256 header", wantOutcome: "pull_request unauthorized",
		},
		{
			name: "wrong signature",
			req: func() *http.Request {
				r := signedRequest("pull_request", id, body)
				r.Header.Set(HeaderSignature, Sign([]byte("another secret"), body))
				return r
			},
			wantStatus: 401, wantBody: "delivery " + id + ": signature does not match the body", wantOutcome: "pull_request unauthorized",
		},
		{
			name: "signature of another body",
			req: func() *http.Request {
				r := signedRequest("pull_request", id, body)
				r.Header.Set(HeaderSignature, Sign(testSecret, append([]byte(" "), body...)))
				return r
			},
			wantStatus: 401, wantBody: "signature does not match the body", wantOutcome: "pull_request unauthorized",
		},
		{
			name: "malformed signature",
			req: func() *http.Request {
				r := signedRequest("pull_request", id, body)
				r.Header.Set(HeaderSignature, "sha1=0123")
				return r
			},
			wantStatus: 401, wantBody: "signature does not match: X-Hub-Signature-256 must be sha256= followed by 64 hex digits", wantOutcome: "pull_request unauthorized",
		},
		{
			name: "signature not hex",
			req: func() *http.Request {
				r := signedRequest("pull_request", id, body)
				r.Header.Set(HeaderSignature, "sha256="+strings.Repeat("z", 64))
				return r
			},
			wantStatus: 401, wantBody: "signature does not match: X-Hub-Signature-256 must be sha256=", wantOutcome: "pull_request unauthorized",
		},
		{
			name:       "truncated JSON",
			req:        func() *http.Request { return signedRequest("pull_request", id, body[:len(body)/2]) },
			wantStatus: 400, wantBody: "delivery " + id + ": body is not valid JSON: unexpected end of JSON input", wantOutcome: "pull_request invalid",
		},
		{
			name:       "another event's body",
			req:        func() *http.Request { return signedRequest("pull_request", id, push) },
			wantStatus: 400, wantBody: "delivery " + id + ": pull_request payload has no pull_request object", wantOutcome: "pull_request invalid",
		},
		{
			name:       "pull_request body as push",
			req:        func() *http.Request { return signedRequest("push", id, body) },
			wantStatus: 400, wantBody: "push payload has no ref string", wantOutcome: "push invalid",
		},
		{
			name: "missing event header",
			req: func() *http.Request {
				r := signedRequest("pull_request", id, body)
				r.Header.Del(HeaderEvent)
				return r
			},
			wantStatus: 400, wantBody: "delivery " + id + ": missing X-GitHub-Event header", wantOutcome: "other bad_request",
		},
		{
			name: "missing delivery header",
			req: func() *http.Request {
				r := signedRequest("pull_request", id, body)
				r.Header.Del(HeaderDelivery)
				return r
			},
			wantStatus: 400, wantBody: "missing X-GitHub-Delivery header", wantOutcome: "pull_request bad_request",
		},
		{
			name:       "bad delivery id",
			req:        func() *http.Request { return signedRequest("pull_request", "a b", body) },
			wantStatus: 400, wantBody: "X-GitHub-Delivery header is not a delivery id", wantOutcome: "pull_request bad_request",
		},
		{
			name: "GET",
			req: func() *http.Request {
				r := signedRequest("pull_request", id, body)
				r.Method = http.MethodGet
				return r
			},
			wantStatus: 405, wantBody: "method GET not allowed", wantOutcome: "pull_request bad_method",
		},
		{
			name: "text plain",
			req: func() *http.Request {
				r := signedRequest("pull_request", id, body)
				r.Header.Set("Content-Type", "text/plain")
				return r
			},
			wantStatus: 415, wantBody: "set the webhook's content type to application/json", wantOutcome: "pull_request unsupported_media",
		},
		{
			name: "form signed over the payload, not the form",
			req: func() *http.Request {
				r := formRequest("pull_request", id, "payload="+url.QueryEscape(string(body)))
				r.Header.Set(HeaderSignature, Sign(testSecret, body))
				return r
			},
			wantStatus: 401, wantBody: "signature", wantOutcome: "pull_request unauthorized",
		},
		{
			name:       "form without payload",
			req:        func() *http.Request { return formRequest("pull_request", id, "other="+url.QueryEscape(string(body))) },
			wantStatus: 400, wantBody: "no single payload field", wantOutcome: "pull_request bad_request",
		},
		{
			name: "form with two payloads",
			req: func() *http.Request {
				return formRequest("pull_request", id, "payload="+url.QueryEscape(string(body))+"&payload=%7B%7D")
			},
			wantStatus: 400, wantBody: "no single payload field", wantOutcome: "pull_request bad_request",
		},
		{
			name:       "form with a bad escape",
			req:        func() *http.Request { return formRequest("pull_request", id, "payload=%zz") },
			wantStatus: 400, wantBody: "read form body", wantOutcome: "pull_request bad_request",
		},
		{
			name:       "unknown event label",
			req:        func() *http.Request { r := signedRequest("made_up", id, body); r.Header.Del(HeaderSignature); return r },
			wantStatus: 401, wantBody: "missing X-Hub-Signature-256", wantOutcome: "other unauthorized",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			th := newTestHandler(t, 0)
			w := th.serve(tt.req())
			if w.Code != tt.wantStatus {
				t.Errorf("got status %d, want %d (body %q)", w.Code, tt.wantStatus, w.Body)
			}
			if !strings.Contains(w.Body.String(), tt.wantBody) {
				t.Errorf("got body %q, want it to contain %q", w.Body, tt.wantBody)
			}
			if got := w.Header().Get("Content-Type"); got != "text/plain; charset=utf-8" {
				t.Errorf("got Content-Type %q, want text/plain; charset=utf-8", got)
			}
			if got := th.sink.all(); len(got) != 0 {
				t.Errorf("got %d deliveries in the sink, want none", len(got))
			}
			if diff := cmp.Diff([]string{tt.wantOutcome}, th.metrics.get()); diff != "" {
				t.Errorf("metrics mismatch (-want +got):\n%s", diff)
			}
			// The refusal is reported, with why, for the deliveries page.
			rs := th.refusals()
			if len(rs) != 1 {
				t.Fatalf("got %d refusals reported, want 1", len(rs))
			}
			r := rs[0]
			_, outcome, _ := strings.Cut(tt.wantOutcome, " ")
			if r.Status != tt.wantStatus || r.Outcome != outcome || !strings.Contains(w.Body.String(), r.Message) || r.Message == "" || !r.ReceivedAt.Equal(th.clock.Now()) {
				t.Errorf("refusal %+v, want status %d, outcome %s and the answer's message", r, tt.wantStatus, outcome)
			}
		})
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestHandlerTooLarge(t *testing.T) {
	t.Parallel()
	const size = 30 << 20
	tests := []struct {
		name          string
		contentLength int64
		maxRead       int64
	}{
		{name: "chunked", contentLength: -1, maxRead: DefaultMaxBody + 1},
		{name: "announced", contentLength: size, maxRead: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			th := newTestHandler(t, 0)
			body := &countingReader{r: io.LimitReader(zeros{}, size)}
			r := signedRequest("pull_request", "d1", nil)
			r.Body = io.NopCloser(body)
			r.ContentLength = tt.contentLength
			r.Header.Set(HeaderSignature, "sha256="+strings.Repeat("0", 64))
			w := th.serve(r)
			if w.Code != http.StatusRequestEntityTooLarge {
				t.Errorf("got status %d, want 413", w.Code)
			}
			if want := fmt.Sprintf("delivery d1: body is larger than %d bytes\n", DefaultMaxBody); w.Body.String() != want {
				t.Errorf("got body %q, want %q", w.Body, want)
			}
			if got := body.n.Load(); got > tt.maxRead {
				t.Errorf("handler read %d bytes, want at most %d", got, tt.maxRead)
			}
			if got := th.sink.all(); len(got) != 0 {
				t.Errorf("got %d deliveries in the sink, want none", len(got))
			}
		})
	}
}

func TestHandlerMaxBodyBoundary(t *testing.T) {
	t.Parallel()
	pr := `{"action":"opened","number":2,"pull_request":{"head":{"sha":"abc"}},"repository":{"full_name":"o/r"}}`
	const limit = 1000
	exact := []byte(pr + strings.Repeat(" ", limit-len(pr)))
	over := append(append([]byte(nil), exact...), ' ')
	th := newTestHandler(t, limit)
	if w := th.serve(signedRequest("pull_request", "exact", exact)); w.Code != http.StatusAccepted {
		t.Errorf("body of MaxBody bytes: got status %d (%s), want 202", w.Code, w.Body)
	}
	r := signedRequest("pull_request", "over", over)
	r.ContentLength = -1 // make the handler read to find out
	if w := th.serve(r); w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("body of MaxBody+1 bytes: got status %d (%s), want 413", w.Code, w.Body)
	}
	if got := len(th.sink.all()); got != 1 {
		t.Errorf("got %d stored deliveries, want 1", got)
	}
}

func TestHandlerPingAndIgnored(t *testing.T) {
	t.Parallel()
	th := newTestHandler(t, 0)
	for _, p := range testfixtures.GitHubPayloads(t, "ping") {
		w := th.serve(signedRequest("ping", "ping-"+p.Name, p.Body))
		if w.Code != http.StatusOK || w.Body.String() != "delivery ping-"+p.Name+": pong\n" {
			t.Errorf("ping/%s: got %d %q, want 200 pong", p.Name, w.Code, w.Body)
		}
	}
	for _, event := range otherFixtureEvents() {
		p := testfixtures.GitHubPayloads(t, event)[0]
		w := th.serve(signedRequest(event, "d-"+event, p.Body))
		if want := "delivery d-" + event + ": ignored event " + event + "\n"; w.Code != http.StatusAccepted || w.Body.String() != want {
			t.Errorf("%s: got %d %q, want 202 %q", event, w.Code, w.Body, want)
		}
	}
	// An ignored event is still authenticated.
	r := signedRequest("status", "unsigned", []byte(`{}`))
	r.Header.Set(HeaderSignature, Sign([]byte("wrong"), []byte(`{}`)))
	if w := th.serve(r); w.Code != http.StatusUnauthorized {
		t.Errorf("ignored event with a wrong signature: got status %d, want 401", w.Code)
	}
	if got := th.sink.all(); len(got) != 0 {
		t.Errorf("got %d deliveries in the sink, want none", len(got))
	}
	want := []string{"ping ping", "ping ping"}
	for range otherFixtureEvents() {
		want = append(want, "other ignored")
	}
	want = append(want, "other unauthorized")
	if diff := cmp.Diff(want, th.metrics.get()); diff != "" {
		t.Errorf("metrics mismatch (-want +got):\n%s", diff)
	}
}

func TestHandlerDuplicateAndSinkError(t *testing.T) {
	t.Parallel()
	th := newTestHandler(t, 0)
	body := testfixtures.GitHubPayload(t, "issue_comment", "created.payload.json").Body
	const id = "d-1"
	if w := th.serve(signedRequest("issue_comment", id, body)); w.Code != http.StatusAccepted {
		t.Fatalf("first delivery: got status %d (%s), want 202", w.Code, w.Body)
	}
	w := th.serve(signedRequest("issue_comment", id, body))
	if w.Code != http.StatusOK || w.Body.String() != "delivery d-1: duplicate delivery\n" {
		t.Errorf("redelivery: got %d %q, want 200 duplicate delivery", w.Code, w.Body)
	}

	th.sink.mu.Lock()
	th.sink.err = errors.New("database is locked")
	th.sink.mu.Unlock()
	w = th.serve(signedRequest("issue_comment", "d-2", body))
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("sink error: got status %d, want 503", w.Code)
	}
	if want := "delivery d-2: not stored, send it again: database is locked\n"; w.Body.String() != want {
		t.Errorf("sink error: got body %q, want %q", w.Body, want)
	}
	if got := len(th.sink.all()); got != 1 {
		t.Errorf("got %d stored deliveries, want 1", got)
	}
	want := []string{"issue_comment accepted", "issue_comment duplicate", "issue_comment unavailable"}
	if diff := cmp.Diff(want, th.metrics.get()); diff != "" {
		t.Errorf("metrics mismatch (-want +got):\n%s", diff)
	}
}

func TestHandlerSecret(t *testing.T) {
	t.Parallel()
	var secret atomic.Pointer[[]byte]
	set := func(s string) { b := []byte(s); secret.Store(&b) }
	set("")
	sink := &memorySink{}
	var unreadable atomic.Bool
	h := NewHandler(HandlerOptions{Secret: func() ([]byte, error) {
		if unreadable.Load() {
			return nil, errors.New("github.webhook_secret_file: gone")
		}
		return *secret.Load(), nil
	}, Sink: sink})
	body := []byte(`{"ref":"refs/heads/main","after":"abc","repository":{"full_name":"o/r"}}`)
	send := func(id, key string) *httptest.ResponseRecorder {
		r := signedRequest("push", id, body)
		r.Header.Set(HeaderSignature, Sign([]byte(key), body))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := send("a", ""); w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), "no webhook secret configured") {
		t.Errorf("no secret: got %d %q, want 500 naming the missing secret", w.Code, w.Body)
	}
	unreadable.Store(true) // configured, but its file is gone
	if w := send("a2", ""); w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), "cannot read its webhook secret: github.webhook_secret_file: gone") {
		t.Errorf("unreadable secret: got %d %q, want 500 saying it cannot be read, and why", w.Code, w.Body)
	}
	unreadable.Store(false)
	set("one")
	if w := send("b", "one"); w.Code != http.StatusAccepted {
		t.Errorf("secret one: got status %d, want 202", w.Code)
	}
	set("two") // a reload
	if w := send("c", "one"); w.Code != http.StatusUnauthorized {
		t.Errorf("old secret after reload: got status %d, want 401", w.Code)
	}
	if w := send("d", "two"); w.Code != http.StatusAccepted {
		t.Errorf("new secret after reload: got status %d, want 202", w.Code)
	}
	var ids []string
	for _, d := range sink.all() {
		ids = append(ids, d.ID)
	}
	if diff := cmp.Diff([]string{"b", "d"}, ids); diff != "" {
		t.Errorf("stored deliveries mismatch (-want +got):\n%s", diff)
	}
}

func TestNewHandlerRequiresSecretAndSink(t *testing.T) {
	t.Parallel()
	for _, opts := range []HandlerOptions{
		{Sink: &memorySink{}},
		{Secret: func() ([]byte, error) { return testSecret, nil }},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewHandler(%+v): got no panic, want one", opts)
				}
			}()
			NewHandler(opts)
		}()
	}
}

// TestHandlerConcurrent sends many deliveries at once, some twice.
func TestHandlerConcurrent(t *testing.T) {
	t.Parallel()
	th := newTestHandler(t, 0)
	body := testfixtures.GitHubPayload(t, "pull_request", "synchronize.payload.json").Body
	const workers, perWorker = 16, 20
	var wg sync.WaitGroup
	var accepted, duplicates atomic.Int64
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				// Workers w and w+1 share half their ids.
				id := fmt.Sprintf("d-%d-%d", (w+i%2)%workers, i/2)
				rec := th.serve(signedRequest("pull_request", id, body))
				switch rec.Code {
				case http.StatusAccepted:
					accepted.Add(1)
				case http.StatusOK:
					duplicates.Add(1)
				default:
					t.Errorf("delivery %s: got status %d (%s)", id, rec.Code, rec.Body)
				}
			}
		})
	}
	wg.Wait()
	stored := th.sink.all()
	if got := int64(len(stored)); got != accepted.Load() {
		t.Errorf("got %d stored deliveries, want %d (the accepted ones)", got, accepted.Load())
	}
	// Every id was sent twice, by two workers.
	if got, want := accepted.Load(), int64(workers*perWorker/2); got != want {
		t.Errorf("got %d accepted, want %d", got, want)
	}
	if got, want := duplicates.Load(), int64(workers*perWorker/2); got != want {
		t.Errorf("got %d duplicates, want %d", got, want)
	}
	for _, d := range stored {
		if !bytes.Equal(d.Body, body) {
			t.Errorf("delivery %s: stored body differs from the one sent", d.ID)
		}
	}
}

func TestSend(t *testing.T) {
	t.Parallel()
	th := newTestHandler(t, 0)
	var ua atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ua.Store(r.UserAgent())
		th.handler.ServeHTTP(w, r)
	}))
	defer srv.Close()
	ctx := context.Background()
	body := testfixtures.GitHubPayload(t, "push", "with-new-branch.payload.json").Body

	id, status, answer, err := Send(ctx, srv.Client(), srv.URL+"/hook", testSecret, "push", body)
	if err != nil {
		t.Fatalf("Send: got error %v, want none", err)
	}
	if status != http.StatusAccepted || answer != "delivery "+id+": accepted push\n" {
		t.Errorf("Send: got %d %q, want 202 accepted", status, answer)
	}
	if got := ua.Load(); got != "GitHub-Hookshot/lockstep" {
		t.Errorf("got User-Agent %q, want GitHub-Hookshot/lockstep", got)
	}
	stored := th.sink.all()
	if len(stored) != 1 || stored[0].ID != id || !bytes.Equal(stored[0].Body, body) {
		t.Errorf("got stored %+v, want the sent delivery %s", stored, id)
	}

	id2, status, answer, err := Send(ctx, nil, srv.URL+"/hook", []byte("wrong"), "push", body)
	if err != nil {
		t.Fatalf("Send with a wrong secret: got error %v, want none", err)
	}
	if id2 == id {
		t.Errorf("two sends got the same delivery id %s", id)
	}
	if status != http.StatusUnauthorized || !strings.Contains(answer, "signature does not match") {
		t.Errorf("Send with a wrong secret: got %d %q, want 401", status, answer)
	}
	_, status, answer, _ = Send(ctx, nil, srv.URL+"/hook", nil, "push", body)
	if status != http.StatusUnauthorized || !strings.Contains(answer, "missing X-Hub-Signature-256") {
		t.Errorf("Send without a secret: got %d %q, want 401 missing signature", status, answer)
	}

	if _, _, _, err := Send(ctx, nil, "http://127.0.0.1:0/hook", testSecret, "push", body); err == nil {
		t.Errorf("Send to a closed port: got no error, want one")
	}
	if _, _, _, err := Send(ctx, nil, "::not a url", testSecret, "push", body); err == nil {
		t.Errorf("Send to a bad URL: got no error, want one")
	}
}

func TestNewDeliveryID(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 100 {
		id := NewDeliveryID()
		if len(id) != 36 || id[8] != '-' || id[13] != '-' || id[14] != '4' || id[18] != '-' || !strings.ContainsRune("89ab", rune(id[19])) || id[23] != '-' {
			t.Errorf("NewDeliveryID() = %q, want a version 4 UUID", id)
		}
		if seen[id] {
			t.Errorf("NewDeliveryID() returned %q twice", id)
		}
		seen[id] = true
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	body := []byte(`{"zen":"Keep it logically awesome."}`)
	sig := Sign(testSecret, body)
	tests := []struct {
		name    string
		secret  []byte
		sig     string
		body    []byte
		wantErr bool
	}{
		{"good", testSecret, sig, body, false},
		{"upper-case hex", testSecret, "sha256=" + strings.ToUpper(strings.TrimPrefix(sig, "sha256=")), body, false},
		{"other secret", []byte("x"), sig, body, true},
		{"other body", testSecret, sig, append(body, ' '), true},
		{"no prefix", testSecret, strings.TrimPrefix(sig, "sha256="), body, true},
		{"sha1", testSecret, "sha1=" + strings.TrimPrefix(sig, "sha256="), body, true},
		{"short", testSecret, sig[:len(sig)-2], body, true},
		{"long", testSecret, sig + "00", body, true},
		{"empty", testSecret, "", body, true},
	}
	for _, tt := range tests {
		err := Verify(tt.secret, tt.sig, tt.body)
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: Verify: got error %v, want error %v", tt.name, err, tt.wantErr)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "signature does not match") {
			t.Errorf("%s: Verify: got error %q, want it to start with \"signature does not match\"", tt.name, err)
		}
	}
	// GitHub's documented example.
	if got, want := Sign([]byte("It's a Secret to Everybody"), []byte("Hello, World!")), "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"; got != want {
		t.Errorf("Sign(GitHub's example) = %s, want %s", got, want)
	}
}
