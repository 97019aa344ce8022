package transport

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// etagServer serves "<path> for <token>" with an ETag derived from the
// body, answers a matching If-None-Match with 304, and counts both.
type etagServer struct {
	*httptest.Server
	requests    atomic.Int32
	conditional atomic.Int32
	notModified atomic.Int32
}

func newETagServer(t *testing.T) *etagServer {
	t.Helper()
	s := &etagServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		body := fmt.Sprintf(`{"path":%q,"auth":%q,"accept":%q}`, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Accept"))
		etag := fmt.Sprintf(`"%x"`, len(body)*7919+len(r.Header.Get("Authorization")))
		w.Header().Set("X-RateLimit-Remaining", fmt.Sprint(5000-s.requests.Load()))
		if inm := r.Header.Get("If-None-Match"); inm != "" {
			s.conditional.Add(1)
			if inm == etag {
				s.notModified.Add(1)
				w.Header().Set("ETag", etag)
				w.WriteHeader(http.StatusNotModified)
				return
			}
		}
		w.Header().Set("ETag", etag)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(s.Close)
	return s
}

func TestCacheETag(t *testing.T) {
	t.Parallel()
	srv := newETagServer(t)
	cache := NewCache(newTransport(t), CacheOptions{})
	get := func() *http.Response {
		t.Helper()
		resp, err := cache.RoundTrip(mustRequest(t, t.Context(), "GET", srv.URL+"/repos/o/r/pulls/1", ""))
		if err != nil {
			t.Fatalf("RoundTrip: %v", err)
		}
		return resp
	}
	first := get()
	want := readBody(t, first)
	for i := range 3 {
		resp := get()
		if got := resp.StatusCode; got != http.StatusOK {
			t.Errorf("status of GET %d: got %v, want %v", i+2, got, http.StatusOK)
		}
		if got := readBody(t, resp); got != want {
			t.Errorf("body of GET %d: got %v, want %v", i+2, got, want)
		}
		if got, want := resp.Header.Get("X-From-Cache"), "1"; got != want {
			t.Errorf("X-From-Cache: got %q, want %q", got, want)
		}
		if got, want := resp.Header.Get("Content-Type"), "application/json"; got != want {
			t.Errorf("Content-Type: got %q, want %q", got, want)
		}
		if got, want := resp.Header.Get("X-RateLimit-Remaining"), fmt.Sprint(5000-(i+2)); got != want {
			t.Errorf("X-RateLimit-Remaining (from the 304): got %q, want %q", got, want)
		}
		if got, want := resp.ContentLength, int64(len(want)); got != want {
			t.Errorf("ContentLength: got %v, want %v", got, want)
		}
	}
	if got, want := srv.requests.Load(), int32(4); got != want {
		t.Errorf("requests: got %v, want %v", got, want)
	}
	if got, want := srv.notModified.Load(), int32(3); got != want {
		t.Errorf("304 answers: got %v, want %v", got, want)
	}
	if got, want := cache.Len(), 1; got != want {
		t.Errorf("entries: got %v, want %v", got, want)
	}
}

// TestCacheKeyedByToken: a response fetched with one token is never used
// for another.
func TestCacheKeyedByToken(t *testing.T) {
	t.Parallel()
	srv := newETagServer(t)
	cache := NewCache(newTransport(t), CacheOptions{})
	alice := NewAuth(cache, StaticToken("alice-token"), srv.URL)
	bob := NewAuth(cache, StaticToken("bob-token"), srv.URL)
	get := func(rt http.RoundTripper) string {
		t.Helper()
		resp, err := rt.RoundTrip(mustRequest(t, t.Context(), "GET", srv.URL+"/repos/o/r", ""))
		if err != nil {
			t.Fatalf("RoundTrip: %v", err)
		}
		return readBody(t, resp)
	}
	a1 := get(alice)
	b1 := get(bob)
	if got, want := srv.conditional.Load(), int32(0); got != want {
		t.Errorf("conditional requests after one GET per token: got %v, want %v", got, want)
	}
	if !strings.Contains(b1, "bob-token") {
		t.Errorf("bob's body: got %s, want bob's response", b1)
	}
	if got := get(bob); got != b1 {
		t.Errorf("bob's cached body: got %v, want %v", got, b1)
	}
	if got := get(alice); got != a1 {
		t.Errorf("alice's cached body: got %v, want %v", got, a1)
	}
	if got, want := srv.notModified.Load(), int32(2); got != want {
		t.Errorf("304 answers: got %v, want %v", got, want)
	}
	if got, want := cache.Len(), 2; got != want {
		t.Errorf("entries: got %v, want %v", got, want)
	}
}

func TestCacheLastModified(t *testing.T) {
	t.Parallel()
	const lastModified = "Wed, 21 Oct 2015 07:28:00 GMT"
	var conditional atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-Modified-Since") == lastModified {
			conditional.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Last-Modified", lastModified)
		_, _ = io.WriteString(w, "content")
	}))
	t.Cleanup(srv.Close)
	cache := NewCache(newTransport(t), CacheOptions{})
	for i := range 2 {
		resp, err := cache.RoundTrip(mustRequest(t, t.Context(), "GET", srv.URL+"/x", ""))
		if err != nil {
			t.Fatalf("RoundTrip: %v", err)
		}
		if got, want := readBody(t, resp), "content"; got != want {
			t.Errorf("body %d: got %v, want %v", i, got, want)
		}
	}
	if got, want := conditional.Load(), int32(1); got != want {
		t.Errorf("conditional requests: got %v, want %v", got, want)
	}
}

// TestCacheBypass lists requests and responses the cache leaves alone.
func TestCacheBypass(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		method string
		header map[string]string // on the request
		// respHeader is sent by the server instead of an ETag.
		respHeader map[string]string
	}{
		{"POST", "POST", nil, nil},
		{"caller's own If-None-Match", "GET", map[string]string{"If-None-Match": `"other"`}, nil},
		{"Range", "GET", map[string]string{"Range": "bytes=0-1"}, nil},
		{"request no-store", "GET", map[string]string{"Cache-Control": "no-store"}, nil},
		{"response no-store", "GET", nil, map[string]string{"ETag": `"v"`, "Cache-Control": "private, no-store"}},
		{"no validator", "GET", nil, map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var conditional atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("If-None-Match") == `"v"` {
					conditional.Add(1)
				}
				h := tt.respHeader
				if h == nil {
					h = map[string]string{"ETag": `"v"`}
				}
				for k, v := range h {
					w.Header().Set(k, v)
				}
				_, _ = io.WriteString(w, "body")
			}))
			t.Cleanup(srv.Close)
			cache := NewCache(newTransport(t), CacheOptions{})
			for i := range 2 {
				req := mustRequest(t, t.Context(), tt.method, srv.URL+"/x", "")
				for k, v := range tt.header {
					req.Header.Set(k, v)
				}
				resp, err := cache.RoundTrip(req)
				if err != nil {
					t.Fatalf("RoundTrip: %v", err)
				}
				if got, want := readBody(t, resp), "body"; got != want {
					t.Errorf("body %d: got %v, want %v", i, got, want)
				}
			}
			if got, want := conditional.Load(), int32(0); got != want {
				t.Errorf("requests the cache made conditional: got %v, want %v", got, want)
			}
			if got, want := cache.Len(), 0; got != want {
				t.Errorf("entries: got %v, want %v", got, want)
			}
		})
	}
}

// TestCacheKeyedByAccept: the same URL in two media types is two entries.
func TestCacheKeyedByAccept(t *testing.T) {
	t.Parallel()
	srv := newETagServer(t)
	cache := NewCache(newTransport(t), CacheOptions{})
	bodies := map[string]string{}
	for range 2 {
		for _, accept := range []string{"application/vnd.github+json", "application/vnd.github.diff"} {
			req := mustRequest(t, t.Context(), "GET", srv.URL+"/repos/o/r/pulls/1", "")
			req.Header.Set("Accept", accept)
			resp, err := cache.RoundTrip(req)
			if err != nil {
				t.Fatalf("RoundTrip: %v", err)
			}
			body := readBody(t, resp)
			if prev, ok := bodies[accept]; ok && prev != body {
				t.Errorf("body for %s: got %v, want %v", accept, body, prev)
			}
			bodies[accept] = body
		}
	}
	if bodies["application/vnd.github+json"] == bodies["application/vnd.github.diff"] {
		t.Errorf("both media types got the same body %s", bodies["application/vnd.github.diff"])
	}
	if got, want := srv.notModified.Load(), int32(2); got != want {
		t.Errorf("304 answers: got %v, want %v", got, want)
	}
}

// TestCacheEvictsLeastRecentlyUsed fills a small cache.
func TestCacheEvictsLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	srv := newETagServer(t)
	// Measure one entry, then make room for three and a half.
	probe := NewCache(newTransport(t), CacheOptions{})
	resp, err := probe.RoundTrip(mustRequest(t, t.Context(), "GET", srv.URL+"/z", ""))
	if err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	readBody(t, resp)
	probe.mu.Lock()
	size := probe.size
	probe.mu.Unlock()
	cache := NewCache(newTransport(t), CacheOptions{MaxBytes: 3*size + size/2})
	get := func(path string) {
		t.Helper()
		resp, err := cache.RoundTrip(mustRequest(t, t.Context(), "GET", srv.URL+path, ""))
		if err != nil {
			t.Fatalf("RoundTrip: %v", err)
		}
		readBody(t, resp)
	}
	get("/a")
	get("/b")
	get("/c")
	get("/a") // a is now the most recently used
	get("/d") // evicts b
	if got, want := cache.Len(), 3; got != want {
		t.Fatalf("entries: got %v, want %v", got, want)
	}
	before := srv.notModified.Load()
	get("/a")
	get("/b")
	if got, want := srv.notModified.Load()-before, int32(1); got != want {
		t.Errorf("304 answers for a and b: got %v, want %v (a cached, b evicted)", got, want)
	}
}

// TestCacheLargeBody passes a body over MaxEntryBytes through whole,
// without storing it.
func TestCacheLargeBody(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 5000)
	srv := newScripted(t, step{status: 200, header: map[string]string{"ETag": `"big"`}, body: big})
	cache := NewCache(newTransport(t), CacheOptions{MaxEntryBytes: 1000})
	resp, err := cache.RoundTrip(mustRequest(t, t.Context(), "GET", srv.URL+"/x", ""))
	if err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	if got := readBody(t, resp); got != big {
		t.Errorf("body: got %d bytes, want %d", len(got), len(big))
	}
	if got, want := cache.Len(), 0; got != want {
		t.Errorf("entries: got %v, want %v", got, want)
	}
}
