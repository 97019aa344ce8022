package transport

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	testclock "k8s.io/utils/clock/testing"
)

// testDeadline bounds every wait for a condition in these tests.
const testDeadline = 20 * time.Second

func newFakeClock() *testclock.FakeClock {
	return testclock.NewFakeClock(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
}

// result is what a RoundTrip returned.
type result struct {
	resp *http.Response
	err  error
}

// roundTripAsync runs rt.RoundTrip(req) in a goroutine.
func roundTripAsync(rt http.RoundTripper, req *http.Request) <-chan result {
	ch := make(chan result, 1)
	go func() {
		resp, err := rt.RoundTrip(req)
		ch <- result{resp, err}
	}()
	return ch
}

// poll waits until cond holds, failing the test after testDeadline.
func poll(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(testDeadline)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// await returns the result from ch, failing the test after testDeadline.
func await(t testing.TB, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(testDeadline):
		t.Fatal("timed out waiting for RoundTrip to return")
		return result{}
	}
}

// notYet fails the test if ch already holds a result.
func notYet(t testing.TB, ch <-chan result) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("RoundTrip returned (%v, %v) before the clock reached its wait", r.resp, r.err)
	default:
	}
}

// pumped runs rt.RoundTrip(req), stepping fc by step whenever something
// waits on it, until RoundTrip returns.
func pumped(t testing.TB, fc *testclock.FakeClock, step time.Duration, rt http.RoundTripper, req *http.Request) result {
	t.Helper()
	ch := roundTripAsync(rt, req)
	deadline := time.NewTimer(testDeadline)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case r := <-ch:
			return r
		case <-deadline.C:
			t.Fatal("timed out waiting for RoundTrip to return")
		case <-tick.C:
			if fc.HasWaiters() {
				fc.Step(step)
			}
		}
	}
}

// pump steps fc by step whenever something waits on it, until the
// returned stop function is called.
func pump(fc *testclock.FakeClock, step time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if fc.HasWaiters() {
					fc.Step(step)
				}
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// step is one scripted response.
type step struct {
	status int
	header map[string]string
	body   string
}

// scripted is a test server answering its n-th request with the n-th step,
// and with the last step once the script is used up.
type scripted struct {
	*httptest.Server
	hits atomic.Int32

	mu     sync.Mutex
	bodies []string      // mu guards bodies: request bodies in order
	reqs   []http.Header // mu guards reqs: request headers in order
}

func newScripted(t testing.TB, steps ...step) *scripted {
	t.Helper()
	s := &scripted{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(s.hits.Add(1))
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.bodies = append(s.bodies, string(b))
		s.reqs = append(s.reqs, r.Header.Clone())
		s.mu.Unlock()
		st := steps[min(n, len(steps))-1]
		for k, v := range st.header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(st.status)
		_, _ = io.WriteString(w, st.body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *scripted) requestBodies() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bodies...)
}

func (s *scripted) requestHeaders() []http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]http.Header(nil), s.reqs...)
}

// newTransport returns an http.Transport of the test's own, closed at its
// end.
func newTransport(t testing.TB) *http.Transport {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

func mustRequest(t testing.TB, ctx context.Context, method, url, body string) *http.Request {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// readBody reads and closes resp's body.
func readBody(t testing.TB, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return string(b)
}

// countingBody counts Close calls.
type countingBody struct {
	io.ReadCloser
	closed *atomic.Int32
}

func (b countingBody) Close() error {
	b.closed.Add(1)
	return b.ReadCloser.Close()
}
