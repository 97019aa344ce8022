package transport

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	testclock "k8s.io/utils/clock/testing"
)

const testAppID = 4242

// fakeGitHub is an httptest server speaking the parts of GitHub's API a
// GitHub App uses, checking every JWT it receives.
type fakeGitHub struct {
	*httptest.Server
	t     testing.TB
	key   *rsa.PrivateKey
	clock *testclock.FakeClock
	// installations maps a lower-case owner to its installation ID.
	installations map[string]int64

	lookups   atomic.Int32
	exchanges atomic.Int32
	apiCalls  atomic.Int32
	// failEvery makes every n-th API call a 503 (0: never).
	failEvery int32

	mu          sync.Mutex
	minted      map[string]bool // mu guards minted: tokens handed out
	badRequests []string        // mu guards badRequests
}

func newFakeGitHub(t testing.TB, fc *testclock.FakeClock, installations map[string]int64) *fakeGitHub {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 1024) // small: fast to generate; tests only
	if err != nil {
		t.Fatal(err)
	}
	g := &fakeGitHub{t: t, key: key, clock: fc, installations: installations, minted: map[string]bool{}}
	g.Server = httptest.NewServer(http.HandlerFunc(g.serve))
	t.Cleanup(func() {
		g.Close()
		g.mu.Lock()
		defer g.mu.Unlock()
		for _, bad := range g.badRequests {
			t.Errorf("fake GitHub: %s", bad)
		}
	})
	return g
}

func (g *fakeGitHub) fail(format string, args ...any) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.badRequests = append(g.badRequests, fmt.Sprintf(format, args...))
}

// checkJWT reports whether r carries a valid JWT of the test App.
func (g *fakeGitHub) checkJWT(r *http.Request) bool {
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		g.fail("%s %s: no bearer token", r.Method, r.URL.Path)
		return false
	}
	var claims jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return &g.key.PublicKey, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithTimeFunc(g.clock.Now), jwt.WithIssuer(strconv.Itoa(testAppID)),
		jwt.WithIssuedAt(), jwt.WithExpirationRequired())
	if err != nil {
		g.fail("%s %s: JWT: %v", r.Method, r.URL.Path, err)
		return false
	}
	now := g.clock.Now()
	if exp := claims.ExpiresAt.Time; exp.Sub(now) > 10*time.Minute {
		g.fail("JWT expires at %v, more than 10 minutes after %v", exp, now)
	}
	if iat := claims.IssuedAt.Time; now.Sub(iat) < time.Minute {
		g.fail("JWT issued at %v, want a minute before %v", iat, now)
	}
	return true
}

func (g *fakeGitHub) serve(w http.ResponseWriter, r *http.Request) {
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(segs) >= 3 && segs[len(segs)-1] == "installation" && r.Method == "GET":
		if !g.checkJWT(r) {
			http.Error(w, `{"message":"bad JWT"}`, http.StatusUnauthorized)
			return
		}
		g.lookups.Add(1)
		id, ok := g.installations[strings.ToLower(segs[1])]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"message":"Not Found"}`)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"id": id, "account": map[string]any{"login": segs[1]}})
	case len(segs) == 4 && segs[0] == "app" && segs[1] == "installations" && segs[3] == "access_tokens" && r.Method == "POST":
		if !g.checkJWT(r) {
			http.Error(w, `{"message":"bad JWT"}`, http.StatusUnauthorized)
			return
		}
		n := g.exchanges.Add(1)
		tok := fmt.Sprintf("ghs_inst%s_n%d", segs[2], n)
		g.mu.Lock()
		g.minted[tok] = true
		g.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"token": tok, "expires_at": g.clock.Now().Add(time.Hour).Format(time.RFC3339)})
	default:
		n := g.apiCalls.Add(1)
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		g.mu.Lock()
		ok := g.minted[tok]
		g.mu.Unlock()
		if !ok {
			g.fail("%s %s: token %q was never minted", r.Method, r.URL.Path, tok)
			http.Error(w, `{"message":"Bad credentials"}`, http.StatusUnauthorized)
			return
		}
		if g.failEvery > 0 && n%g.failEvery == 0 {
			http.Error(w, `{"message":"try again"}`, http.StatusServiceUnavailable)
			return
		}
		b, _ := io.ReadAll(r.Body)
		etag := fmt.Sprintf(`"%s"`, strings.ReplaceAll(r.URL.Path, "/", "-"))
		w.Header().Set("X-RateLimit-Remaining", "4000")
		w.Header().Set("X-RateLimit-Reset", unix(g.clock.Now().Add(time.Hour)))
		if r.Method == "GET" && r.Header.Get("If-None-Match") == etag {
			w.Header().Set("ETag", etag)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		_, _ = fmt.Fprintf(w, `{"path":%q,"installation":%q,"body":%q}`, r.URL.Path, installationOf(tok), b)
	}
}

// installationOf returns the installation a token minted by fakeGitHub
// belongs to.
func installationOf(tok string) string {
	s, _ := strings.CutPrefix(tok, "ghs_inst")
	id, _, _ := strings.Cut(s, "_")
	return id
}

func (g *fakeGitHub) source(t testing.TB, cfg AppConfig) *AppTokenSource {
	t.Helper()
	cfg.AppID = testAppID
	cfg.PrivateKey = g.key
	cfg.Endpoint = g.URL
	cfg.Clock = g.clock
	if cfg.Transport == nil {
		cfg.Transport = newTransport(t)
	}
	s, err := NewAppTokenSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAppTokenSource(t *testing.T) {
	t.Parallel()
	fc := newFakeClock()
	g := newFakeGitHub(t, fc, map[string]int64{"kubernetes": 1, "lockstep-ci": 2})
	src := g.source(t, AppConfig{})
	token := func(path string) string {
		t.Helper()
		tok, err := src.Token(t.Context(), mustRequest(t, t.Context(), "GET", g.URL+path, ""))
		if err != nil {
			t.Fatalf("Token for %s: %v", path, err)
		}
		return tok
	}
	k1 := token("/repos/kubernetes/kubernetes/pulls/1")
	k2 := token("/repos/Kubernetes/test-infra/issues/2/comments")
	k3 := token("/orgs/kubernetes/members/alice")
	l1 := token("/repos/lockstep-ci/lockstep/statuses/abc")
	if k1 != k2 || k1 != k3 {
		t.Errorf("tokens for one owner: got %q, %q, %q, want one token", k1, k2, k3)
	}
	if got, want := installationOf(k1), "1"; got != want {
		t.Errorf("installation of kubernetes's token: got %v, want %v", got, want)
	}
	if got, want := installationOf(l1), "2"; got != want {
		t.Errorf("installation of lockstep-ci's token: got %v, want %v", got, want)
	}
	if got, want := g.lookups.Load(), int32(2); got != want {
		t.Errorf("installation lookups: got %v, want %v (one per owner)", got, want)
	}
	if got, want := g.exchanges.Load(), int32(2); got != want {
		t.Errorf("token exchanges: got %v, want %v", got, want)
	}

	// A request to /app gets the App's JWT.
	appReq := mustRequest(t, t.Context(), "GET", g.URL+"/app/installations", "")
	tok, err := src.Token(t.Context(), appReq)
	if err != nil {
		t.Fatalf("Token for /app: %v", err)
	}
	appReq.Header.Set("Authorization", "Bearer "+tok)
	if !g.checkJWT(appReq) {
		t.Errorf("token for /app/installations is not the App's JWT")
	}
}

// TestAppTokenRefreshOnce: when the cached token nears expiry on the fake
// clock, many concurrent callers cause exactly one refresh.
func TestAppTokenRefreshOnce(t *testing.T) {
	t.Parallel()
	fc := newFakeClock()
	g := newFakeGitHub(t, fc, map[string]int64{"o": 7})
	src := g.source(t, AppConfig{})
	tokens := func() map[string]int {
		var mu sync.Mutex
		seen := map[string]int{}
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				tok, err := src.Token(t.Context(), mustRequest(t, t.Context(), "GET", g.URL+"/repos/o/r/pulls", ""))
				if err != nil {
					t.Errorf("Token: %v", err)
					return
				}
				mu.Lock()
				seen[tok]++
				mu.Unlock()
			})
		}
		wg.Wait()
		return seen
	}
	if got := tokens(); len(got) != 1 {
		t.Fatalf("tokens: got %v, want one", got)
	}
	if got, want := g.exchanges.Load(), int32(1); got != want {
		t.Fatalf("exchanges: got %v, want %v", got, want)
	}
	fc.Step(54 * time.Minute) // 6 minutes left: still good
	if got := tokens(); len(got) != 1 || g.exchanges.Load() != 1 {
		t.Fatalf("after 54 minutes: got tokens %v and %d exchanges, want the first token and 1 exchange", got, g.exchanges.Load())
	}
	fc.Step(time.Minute + time.Second) // under 5 minutes left: refresh
	got := tokens()
	if len(got) != 1 {
		t.Errorf("tokens after expiry: got %v, want one", got)
	}
	for tok := range got {
		if !strings.HasSuffix(tok, "_n2") {
			t.Errorf("token after expiry: got %v, want the second one minted", tok)
		}
	}
	if got, want := g.exchanges.Load(), int32(2); got != want {
		t.Errorf("exchanges: got %v, want %v", got, want)
	}
	if got, want := g.lookups.Load(), int32(1); got != want {
		t.Errorf("installation lookups: got %v, want %v", got, want)
	}
}

func TestAppTokenSourceErrors(t *testing.T) {
	t.Parallel()
	fc := newFakeClock()
	g := newFakeGitHub(t, fc, map[string]int64{"o": 7})
	src := g.source(t, AppConfig{})
	tests := []struct {
		path string
		want string
	}{
		{"/repos/stranger/r/pulls", "find installation of GitHub App 4242 for stranger: HTTP 404: Not Found"},
		{"/rate_limit", "names no repository, organization or user"},
	}
	for _, tt := range tests {
		_, err := src.Token(t.Context(), mustRequest(t, t.Context(), "GET", g.URL+tt.path, ""))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Token for %s: got error %v, want one containing %q", tt.path, err, tt.want)
		}
	}

	// A fixed installation needs no owner.
	fixed := g.source(t, AppConfig{InstallationID: 9})
	tok, err := fixed.Token(t.Context(), mustRequest(t, t.Context(), "GET", g.URL+"/rate_limit", ""))
	if err != nil {
		t.Fatalf("Token with a fixed installation: %v", err)
	}
	if got, want := installationOf(tok), "9"; got != want {
		t.Errorf("installation: got %v, want %v", got, want)
	}
}

func TestNewAppTokenSourceValidates(t *testing.T) {
	t.Parallel()
	key, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  AppConfig
		want string
	}{
		{"no app ID", AppConfig{PrivateKey: key}, "app ID 0"},
		{"no key", AppConfig{AppID: 1}, "no private key"},
		{"bad endpoint", AppConfig{AppID: 1, PrivateKey: key, Endpoint: "api.github.com"}, `endpoint "api.github.com"`},
	}
	for _, tt := range tests {
		_, err := NewAppTokenSource(tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got error %v, want one containing %q", tt.name, err, tt.want)
		}
	}
	if _, err := NewAppTokenSource(AppConfig{AppID: 1, PrivateKey: key}); err != nil {
		t.Errorf("valid config: got error %v, want none", err)
	}
}

// TestAppTokenCallerCancelDoesNotCancelOthers: a caller that gives up does
// not fail the shared exchange for the others.
func TestAppTokenCallerCancelDoesNotCancelOthers(t *testing.T) {
	t.Parallel()
	fc := newFakeClock()
	g := newFakeGitHub(t, fc, map[string]int64{"o": 7})
	base := newTransport(t)
	release := make(chan struct{})
	var entered atomic.Int32
	slow := RoundTripperFunc(func(req *http.Request) (*http.Response, error) {
		if strings.HasSuffix(req.URL.Path, "/access_tokens") {
			entered.Add(1)
			<-release
		}
		return base.RoundTrip(req)
	})
	src := g.source(t, AppConfig{Transport: slow})
	ctx, cancel := context.WithCancel(t.Context())
	first := make(chan error, 1)
	go func() {
		_, err := src.Token(ctx, mustRequest(t, ctx, "GET", g.URL+"/repos/o/r", ""))
		first <- err
	}()
	poll(t, "the exchange to start", func() bool { return entered.Load() == 1 })
	second := make(chan error, 1)
	go func() {
		_, err := src.Token(t.Context(), mustRequest(t, t.Context(), "GET", g.URL+"/repos/o/r", ""))
		second <- err
	}()
	cancel()
	if err := <-first; err == nil {
		t.Error("cancelled caller: got nil error, want one")
	}
	close(release)
	if err := <-second; err != nil {
		t.Errorf("other caller: got %v, want nil", err)
	}
	if got, want := g.exchanges.Load(), int32(1); got != want {
		t.Errorf("exchanges: got %v, want %v", got, want)
	}
}
